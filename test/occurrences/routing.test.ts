/**
 * Occurrence routing end to end: real Postgres, a real coordinator on port 0,
 * real `ws` clients, real HTTP. Each test gets its own database so a stopped
 * coordinator's leftovers can never reach the next test's fallback spy.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { iterationIdFor } from '../../src/schedule/occurrence-id.js';
import { createTestDb, type TestDb } from '../support/db.js';
import {
  connectClient,
  createFallbackSpy,
  inMs,
  insertMissions,
  occurrencesOf,
  sleep,
  startTestCoordinator,
  updateMission,
  waitFor,
  type TestCoordinator,
  type WsClient,
} from '../support/coordinator.js';

let db: TestDb;
const running: TestCoordinator[] = [];
const clients: WsClient[] = [];

beforeEach(async () => {
  db = await createTestDb();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await db.drop();
});

async function start(env: Record<string, string> = {}) {
  const fallback = createFallbackSpy();
  const c = await startTestCoordinator(db.sql, env, { fallback });
  running.push(c);
  return { c, fallback };
}

async function connect(c: TestCoordinator, userId: string, deviceId: string): Promise<WsClient> {
  const client = await connectClient(c.wsUrl, { token: await c.token(userId), deviceId });
  clients.push(client);
  return client;
}

async function claimHttp(c: TestCoordinator, userId: string, iterationId: string, deviceId: string, action = 'claim') {
  const res = await fetch(`${c.url}/v1/occurrences/${iterationId}/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await c.token(userId)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ deviceId }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('routing a due occurrence', () => {
  it('a due mission with one open socket gets exactly one nudge and one occurrence', async () => {
    const { c, fallback } = await start();
    const ws = await connect(c, 'u1', 'laptop');
    const dueAt = inMs(300);
    await insertMissions(db.sql, [{ userId: 'u1', missionId: 'm1', nextRunAt: dueAt }]);

    const nudge = await ws.next('mission-due');
    expect(nudge.missionId).toBe('m1');
    expect(Date.parse(nudge.dueAt)).toBe(Date.parse(dueAt));
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(dueAt));

    // Several more passes must neither nudge again nor create another row.
    await sleep(600);
    expect(ws.nudges()).toHaveLength(1);
    const rows = await occurrencesOf(db.sql, 'u1');
    expect(rows).toEqual([expect.objectContaining({ iterationId: nudge.iterationId, missionId: 'm1', status: 'nudged', channel: 'ws' })]);
    expect(fallback.calls).toHaveLength(0);
  });

  it('two devices of one user both get the nudge; the first claim wins, the other gets 409', async () => {
    const { c } = await start();
    const laptop = await connect(c, 'u2', 'laptop');
    const phone = await connect(c, 'u2', 'phone');
    await insertMissions(db.sql, [{ userId: 'u2', missionId: 'm1', nextRunAt: inMs(200) }]);

    const [a, b] = await Promise.all([laptop.next('mission-due'), phone.next('mission-due')]);
    expect(a.iterationId).toBe(b.iterationId);

    laptop.send({ type: 'claim', iterationId: a.iterationId });
    const result = await laptop.next('claim-result');
    expect(result).toMatchObject({ iterationId: a.iterationId, granted: true });
    expect(Date.parse(result.leaseExpiresAt!)).toBeGreaterThan(Date.now());

    const refused = await claimHttp(c, 'u2', a.iterationId, 'phone');
    expect(refused.status).toBe(409);
    phone.send({ type: 'claim', iterationId: a.iterationId });
    expect(await phone.next('claim-result')).toMatchObject({ granted: false, reason: 'held' });

    const rows = await occurrencesOf(db.sql, 'u2');
    expect(rows).toEqual([expect.objectContaining({ status: 'claimed', claimedBy: 'laptop' })]);
  });

  it('claims racing from two devices (socket and HTTP at once): exactly one is granted', async () => {
    const { c } = await start();
    const devices = ['d1', 'd2', 'd3', 'd4'];
    const sockets = await Promise.all(devices.map((d) => connect(c, 'u3', d)));
    await insertMissions(db.sql, [{ userId: 'u3', missionId: 'm1', nextRunAt: inMs(200) }]);
    const nudges = await Promise.all(sockets.map((s) => s.next('mission-due')));
    const id = nudges[0]!.iterationId;
    const token = await c.token('u3');

    // d1, d2 claim over the socket; d3, d4 over HTTP; all at the same moment.
    sockets[0]!.send({ type: 'claim', iterationId: id });
    sockets[1]!.send({ type: 'claim', iterationId: id });
    const http = await Promise.all(
      ['d3', 'd4'].map((d) =>
        fetch(`${c.url}/v1/occurrences/${id}/claim`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ deviceId: d }),
        }).then((r) => r.status),
      ),
    );
    const wsResults = await Promise.all([sockets[0]!.next('claim-result'), sockets[1]!.next('claim-result')]);
    const granted = wsResults.filter((r) => r.granted).length + http.filter((s) => s === 200).length;
    expect(granted).toBe(1);
    expect(http.filter((s) => s !== 200).every((s) => s === 409)).toBe(true);
    const [row] = await occurrencesOf(db.sql, 'u3');
    expect(row!.status).toBe('claimed');
  });

  it('a user with no device goes to the fallback at once', async () => {
    const { fallback } = await start({ WS_CLAIM_TIMEOUT_MS: '60000', INSTANCE_ID: 'solo' });
    const started = Date.now();
    await insertMissions(db.sql, [{ userId: 'u4', missionId: 'm1', nextRunAt: inMs(-1000) }]);
    await waitFor(() => fallback.calls.length > 0, 3000, 'the fallback to be called');
    // "At once": within a couple of passes, not after any claim deadline.
    expect(Date.now() - started).toBeLessThan(1500);
    const [call] = fallback.calls;
    expect(call).toMatchObject({ userId: 'u4', missionId: 'm1', status: 'planning', channel: 'server', claimedBy: 'server:solo' });
    await sleep(500);
    expect(fallback.calls).toHaveLength(1);
    const rows = await occurrencesOf(db.sql, 'u4');
    expect(rows).toEqual([expect.objectContaining({ iterationId: call!.iterationId, status: 'planning', channel: 'server', claimedBy: 'server:solo' })]);
  });

  it('a nudge nobody claims goes to the fallback once the claim deadline passes', async () => {
    const { c, fallback } = await start({ WS_CLAIM_TIMEOUT_MS: '500' });
    const ws = await connect(c, 'u5', 'laptop');
    await insertMissions(db.sql, [{ userId: 'u5', missionId: 'm1', nextRunAt: inMs(100) }]);
    const nudge = await ws.next('mission-due');
    const nudgedAt = Date.now();
    expect(fallback.calls).toHaveLength(0);

    await waitFor(() => fallback.calls.length > 0, 3000, 'the fallback after the deadline');
    const waited = Date.now() - nudgedAt;
    expect(waited).toBeGreaterThanOrEqual(400);
    expect(waited).toBeLessThan(1500);
    expect(fallback.calls[0]).toMatchObject({ iterationId: nudge.iterationId, status: 'planning', channel: 'server', lastError: 'no claim before the deadline' });

    // The device is too late now: the server holds it.
    ws.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await ws.next('claim-result')).toMatchObject({ granted: false, reason: 'held' });
  });

  it('a lease that expires without completion goes to the fallback', async () => {
    const { c, fallback } = await start({ CLAIM_LEASE_MS: '800' });
    const ws = await connect(c, 'u6', 'laptop');
    await insertMissions(db.sql, [{ userId: 'u6', missionId: 'm1', nextRunAt: inMs(100) }]);
    const nudge = await ws.next('mission-due');
    ws.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await ws.next('claim-result')).toMatchObject({ granted: true });
    const claimedAt = Date.now();

    await waitFor(() => fallback.calls.length > 0, 3000, 'the fallback after the lease');
    expect(Date.now() - claimedAt).toBeGreaterThanOrEqual(700);
    expect(fallback.calls[0]).toMatchObject({ iterationId: nudge.iterationId, status: 'planning', channel: 'server', lastError: 'lease of laptop expired' });

    // Completing after the lease passed is refused: the server took it over.
    const late = await claimHttp(c, 'u6', nudge.iterationId, 'laptop', 'complete');
    expect(late.status).toBe(409);
  });

  it('an occurrence left unrouted by a crashed pass is routed by a later one', async () => {
    const { c, fallback } = await start({ TICK_ENABLED: 'false' });
    const ws = await connect(c, 'u7', 'laptop');
    await insertMissions(db.sql, [{ userId: 'u7', missionId: 'm1', nextRunAt: inMs(-60_000) }]);
    await c.projection.refresh();
    // Another instance created the occurrence a minute ago and died before routing it.
    const [snap] = await db.sql<{ due: string }[]>`
      SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS due
      FROM mana_ai.mission_snapshots WHERE user_id = 'u7' AND mission_id = 'm1'`;
    const id = iterationIdFor('u7', 'm1', snap!.due);
    await db.sql`
      INSERT INTO mana_ai.occurrences (iteration_id, user_id, mission_id, due_at, created_at, updated_at)
      VALUES (${id}, 'u7', 'm1', ${snap!.due}, now() - interval '1 minute', now() - interval '1 minute')`;

    await c.scheduler.runOnce();
    const nudge = await ws.next('mission-due');
    expect(nudge.iterationId).toBe(id);
    expect(await occurrencesOf(db.sql, 'u7')).toEqual([expect.objectContaining({ iterationId: id, status: 'nudged', channel: 'ws' })]);
    await c.scheduler.runOnce();
    expect(ws.nudges()).toHaveLength(1);
    expect(fallback.calls).toHaveLength(0);
  });

  it('missions falling due while a pass runs are handled right after it, not at the next tick', async () => {
    // A long tick, so only the timer armed for the next due time can be on time. No socket:
    // these go through the due scan (not the nudges armed ahead), to the fallback.
    const { c, fallback } = await start({ TICK_INTERVAL_MS: '10000' });
    const first = Date.now() + 1500;
    // Due times 4 ms apart: each pass takes longer than that, so later ones fall due mid-pass.
    const missions = Array.from({ length: 30 }, (_, i) => ({ userId: `offline-${i}`, missionId: 'm', nextRunAt: new Date(first + i * 4).toISOString() }));
    await insertMissions(db.sql, missions);
    await c.scheduler.runOnce(); // projects them and arms the timer for the first
    await waitFor(() => fallback.calls.length === missions.length, 12_000, 'all fallbacks');
    const lateness = fallback.calls.map((o, i) => fallback.times[i]! - Date.parse(o.dueAt));
    expect(Math.min(...lateness)).toBeGreaterThanOrEqual(0);
    // Generous for a loaded machine, far below the 10 s tick a missed mission would wait for.
    expect(Math.max(...lateness)).toBeLessThan(1000);
  });

  it('nudges readied ahead go out at their due instant, never before, each once', async () => {
    const { c } = await start({ TICK_INTERVAL_MS: '10000' });
    const sockets = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(c, `live-${i}`, 'laptop')));
    const first = Date.now() + 2500;
    await insertMissions(db.sql, sockets.map((_, i) => ({ userId: `live-${i}`, missionId: 'm', nextRunAt: new Date(first + i * 7).toISOString() })));
    await c.scheduler.runOnce();
    // Created ahead, already nudged with the deadline counted from dueAt, not yet sent.
    const ahead = await db.sql<{ status: string; deadlineMs: number }[]>`
      SELECT status, (extract(epoch FROM deadline_at - due_at) * 1000)::int AS "deadlineMs" FROM mana_ai.occurrences WHERE due_at > now()`;
    expect(ahead).toHaveLength(20);
    expect(ahead.every((r) => r.status === 'nudged' && r.deadlineMs === 20_000)).toBe(true);
    expect(sockets.every((s) => s.nudges().length === 0)).toBe(true);
    // A socket joining now must not get them early from its pending list either.
    const late = await connect(c, 'live-0', 'phone');
    await sleep(100);
    expect(late.nudges()).toHaveLength(0);

    const frames = await Promise.all(sockets.map((s) => s.next('mission-due')));
    for (const [i, s] of sockets.entries()) {
      const lateness = s.arrivals[s.frames.indexOf(frames[i]!)]! - Date.parse(frames[i]!.dueAt);
      expect(lateness).toBeGreaterThanOrEqual(0);
      expect(lateness).toBeLessThan(500);
    }
    await waitFor(async () => {
      const rows = await db.sql<{ status: string }[]>`SELECT status FROM mana_ai.occurrences`;
      return rows.length === 20 && rows.every((r) => r.status === 'nudged');
    }, 3000, 'every occurrence marked nudged');
    await c.scheduler.runOnce();
    expect(sockets.every((s) => s.nudges().length === 1)).toBe(true);
  });

  it('a mission paused before its readied nudge is due gets no nudge; stopping releases what is readied', async () => {
    const { c } = await start({ TICK_INTERVAL_MS: '10000' });
    const ws = await connect(c, 'u10', 'laptop');
    const dueAt = inMs(2500);
    await insertMissions(db.sql, [
      { userId: 'u10', missionId: 'paused', nextRunAt: dueAt },
      { userId: 'u10', missionId: 'kept', nextRunAt: inMs(4000) },
    ]);
    await c.scheduler.runOnce();
    expect(await occurrencesOf(db.sql, 'u10')).toHaveLength(2);
    await updateMission(db.sql, 'u10', 'paused', { state: 'paused' });
    await c.scheduler.runOnce();
    const [paused] = (await occurrencesOf(db.sql, 'u10')).filter((r) => r.missionId === 'paused');
    expect(paused).toMatchObject({ status: 'superseded', lastError: 'mission paused' });
    await sleep(Date.parse(dueAt) - Date.now() + 300);
    expect(ws.nudges()).toHaveLength(0);

    // Stopping before 'kept' is due deletes its readied row: another instance takes it when due.
    await c.stop();
    running.splice(running.indexOf(c), 1);
    expect((await occurrencesOf(db.sql, 'u10')).map((r) => r.missionId)).toEqual(['paused']);
  });

  it('a nextRunAt with microseconds falls due when toISOString() reaches it as a string: the nudge carries that instant and the occurrence is not taken for a reschedule', async () => {
    const { c } = await start();
    const ws = await connect(c, 'u9', 'laptop');
    const ms = new Date(Date.now() + 300).toISOString().slice(0, 23);
    // "….123Z" >= "….123456Z" ('Z' sorts after the digits): the runner runs it at that millisecond.
    const nextRunAt = `${ms}456Z`;
    const dueAt = `${ms}000Z`;
    await insertMissions(db.sql, [{ userId: 'u9', missionId: 'm1', nextRunAt }]);
    const nudge = await ws.next('mission-due');
    expect(nudge.dueAt).toBe(dueAt);
    expect(nudge.iterationId).toBe(iterationIdFor('u9', 'm1', dueAt));
    await sleep(400);
    expect(await occurrencesOf(db.sql, 'u9')).toEqual([expect.objectContaining({ status: 'nudged' })]);
    expect(ws.nudges()).toHaveLength(1);
  });
});
