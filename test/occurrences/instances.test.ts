/**
 * Two coordinator instances in one process on one database (different
 * INSTANCE_IDs). Whichever instance finds a due mission first creates its
 * occurrence (INSERT … ON CONFLICT DO NOTHING) and routes it; a socket held
 * by the other instance gets the nudge through LISTEN/NOTIFY.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSql, type Sql } from '../../src/db/pool.js';
import { createTestDb, type TestDb } from '../support/db.js';
import {
  connectClient,
  createFallbackSpy,
  inMs,
  insertMissions,
  occurrencesOf,
  sleep,
  startTestCoordinator,
  waitFor,
  type FallbackSpy,
  type TestCoordinator,
  type WsClient,
} from '../support/coordinator.js';

let db: TestDb;
/** B's own pool, as a second process would have. */
let sqlB: Sql;
const running: TestCoordinator[] = [];
const clients: WsClient[] = [];

beforeEach(async () => {
  db = await createTestDb({ poolMax: 4 });
  sqlB = createSql(db.url, { max: 4 });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await sqlB.end({ timeout: 5 });
  await db.drop();
});

async function pair(envA: Record<string, string>, envB: Record<string, string>) {
  const fa = createFallbackSpy();
  const fb = createFallbackSpy();
  const a = await startTestCoordinator(db.sql, { INSTANCE_ID: 'inst-a', ...envA }, { fallback: fa });
  running.push(a);
  const b = await startTestCoordinator(sqlB, { INSTANCE_ID: 'inst-b', ...envB }, { fallback: fb });
  running.push(b);
  return { a, b, fa, fb };
}

async function connect(c: TestCoordinator, userId: string, deviceId: string): Promise<WsClient> {
  const client = await connectClient(c.wsUrl, { token: await c.token(userId), deviceId });
  clients.push(client);
  return client;
}

function noFallback(...spies: FallbackSpy[]) {
  for (const s of spies) expect(s.calls).toHaveLength(0);
}

describe('two instances on one database', () => {
  it('both ticking, socket on A: exactly one occurrence and one nudge per due mission', async () => {
    const { a, b, fa, fb } = await pair({}, {});
    const users = Array.from({ length: 12 }, (_, i) => `u${i}`);
    const sockets = await Promise.all(users.map((u) => connect(a, u, 'laptop')));
    // Every mission falls due at the same instant, so both schedulers wake for it together.
    const dueAt = inMs(400);
    await insertMissions(db.sql, users.map((u) => ({ userId: u, missionId: 'm1', nextRunAt: dueAt })));

    const frames = await Promise.all(sockets.map((s) => s.next('mission-due')));
    // Both instances keep passing; nothing may be created or sent twice.
    await sleep(700);
    for (const [i, s] of sockets.entries()) {
      expect(s.nudges()).toHaveLength(1);
      const rows = await occurrencesOf(db.sql, users[i]!);
      expect(rows).toEqual([expect.objectContaining({ iterationId: frames[i]!.iterationId, status: 'nudged', channel: 'ws' })]);
    }
    expect(a.scheduler.state().lastPassAt).not.toBeNull();
    expect(b.scheduler.state().lastPassAt).not.toBeNull();
    noFallback(fa, fb);
  });

  it('only B ticks, socket on A: the nudge B decides reaches A through LISTEN/NOTIFY', async () => {
    const { a, b, fa, fb } = await pair({ TICK_ENABLED: 'false' }, {});
    const ws = await connect(a, 'u1', 'laptop');
    expect(b.hub.hasLocal('u1')).toBe(false);
    const dueAt = inMs(300);
    await insertMissions(db.sql, [{ userId: 'u1', missionId: 'm1', nextRunAt: dueAt }]);

    const frame = await ws.next('mission-due');
    const latency = Date.now() - Date.parse(dueAt);
    expect(frame.missionId).toBe('m1');
    expect(latency).toBeLessThan(1000);
    // A never ran a pass: B created and routed it, A only relayed the notification.
    expect(a.scheduler.state().lastPassAt).toBeNull();
    await sleep(400);
    expect(ws.nudges()).toHaveLength(1);
    expect(await occurrencesOf(db.sql, 'u1')).toEqual([expect.objectContaining({ status: 'nudged', channel: 'ws' })]);
    noFallback(fa, fb);
  });

  it('sockets of one user on both instances: each device gets exactly one nudge, one claim wins', async () => {
    const { a, b, fa, fb } = await pair({}, {});
    const onA = await connect(a, 'u1', 'laptop');
    const onB = await connect(b, 'u1', 'phone');
    await insertMissions(db.sql, [{ userId: 'u1', missionId: 'm1', nextRunAt: inMs(300) }]);
    const [fA, fB] = await Promise.all([onA.next('mission-due'), onB.next('mission-due')]);
    expect(fA.iterationId).toBe(fB.iterationId);
    onA.send({ type: 'claim', iterationId: fA.iterationId });
    onB.send({ type: 'claim', iterationId: fB.iterationId });
    const results = await Promise.all([onA.next('claim-result'), onB.next('claim-result')]);
    expect(results.filter((r) => r.granted)).toHaveLength(1);
    await sleep(400);
    expect(onA.nudges()).toHaveLength(1);
    expect(onB.nudges()).toHaveLength(1);
    noFallback(fa, fb);
  });

  it('a user with no socket on either instance is handed to exactly one fallback', async () => {
    const { fa, fb } = await pair({}, {});
    await insertMissions(db.sql, Array.from({ length: 10 }, (_, i) => ({ userId: `nobody${i}`, missionId: 'm1', nextRunAt: inMs(200) })));
    await waitFor(() => fa.calls.length + fb.calls.length >= 10, 3000, 'ten fallbacks');
    await sleep(400);
    const ids = [...fa.calls, ...fb.calls].map((o) => o.iterationId);
    expect(ids).toHaveLength(10);
    expect(new Set(ids).size).toBe(10);
  });

  it('NOTIFY carries only nudges whose users have a socket on another instance', async () => {
    // Only A ticks, so A owns every occurrence: what it must NOTIFY is exactly what B holds.
    const { a, b } = await pair({}, { TICK_ENABLED: 'false' });
    const seen: string[] = [];
    const listener = await db.sql.listen('mana_ai_nudge', (payload) => seen.push(payload));
    try {
      const localOnly = await connect(a, 'only-on-a', 'laptop');
      const split = [await connect(a, 'on-both', 'laptop'), await connect(b, 'on-both', 'phone')];
      await insertMissions(db.sql, [
        { userId: 'only-on-a', missionId: 'm1', nextRunAt: inMs(300) },
        { userId: 'on-both', missionId: 'm1', nextRunAt: inMs(300) },
      ]);
      await localOnly.next('mission-due');
      await Promise.all(split.map((s) => s.next('mission-due')));
      await sleep(300);
      const notified = seen.flatMap((p) => (JSON.parse(p) as { nudges: [string][] }).nudges.map((n) => n[0]));
      expect(notified).toEqual(['on-both']);
      expect(split.every((s) => s.nudges().length === 1)).toBe(true);
    } finally {
      await listener.unlisten();
    }
  });
});
