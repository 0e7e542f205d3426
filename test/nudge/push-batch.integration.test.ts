/**
 * One wake-up per user per burst, end to end: a real coordinator and
 * Postgres, a real push service (web-push-testing) that decrypts what it
 * receives. A user whose three missions fall due at one instant gets ONE
 * push naming all three (exactly the ledger's occurrences, each nudged over
 * push once); a user with one due mission gets the plain single-nudge
 * payload, as before.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { inMs, sleep, waitFor } from '../support/coordinator.js';
import { startWebPushTesting, type WebPushTesting } from './web-push-testing-server.js';
import { insertPlannable, ledger, putSubscription, startCaptured, type CapturedCoordinator } from '../faults/support.js';
import { PushNudgePayload } from '../../src/nudge/protocol.js';

let db: TestDb;
let wpt: WebPushTesting;
let c: CapturedCoordinator;

beforeAll(async () => {
  db = await createTestDb();
  wpt = await startWebPushTesting();
  c = await startCaptured(db.sql, { INSTANCE_ID: 'push-batch', PUSH_ENDPOINT_ALLOWLIST: wpt.origin, PUSH_CLAIM_TIMEOUT_MS: '60000' });
});

afterAll(async () => {
  await c?.stop();
  await wpt?.close();
  await db?.drop();
});

it('three missions of one user due together: one push naming all three; one mission: the single payload', async () => {
  const { publicKey } = (await (await fetch(`${c.url}/v1/push/vapid-public-key`)).json()) as { publicKey: string };
  const subs: Record<string, Awaited<ReturnType<WebPushTesting['subscribe']>>> = {};
  for (const userId of ['many', 'one']) {
    subs[userId] = await wpt.subscribe(publicKey);
    expect((await putSubscription(c.url, await c.token(userId), 'phone', subs[userId]!)).status).toBe(201);
  }
  const dueAt = inMs(-500);
  await insertPlannable(db.sql, [
    ...['a', 'b', 'c'].map((m) => ({ userId: 'many', missionId: `m-${m}`, nextRunAt: dueAt })),
    { userId: 'one', missionId: 'm-solo', nextRunAt: dueAt },
  ]);

  const rows = await waitFor(async () => {
    const r = await ledger(db.sql, 'many');
    return r.length === 3 && r.every((o) => o.status === 'nudged') ? r : undefined;
  }, 10_000, "the three occurrences to be nudged");
  expect(rows.map((o) => o.channel)).toEqual(['push', 'push', 'push']);
  await waitFor(async () => (await wpt.notifications(subs['one']!.clientHash)).length > 0, 10_000, 'the single push');
  await sleep(1000); // a second push, were there one, would have arrived by now

  const many = await wpt.notifications(subs['many']!.clientHash);
  expect(many).toHaveLength(1);
  const payload = PushNudgePayload.parse(JSON.parse(many[0]!));
  expect(payload.missions?.map((m) => m.iterationId).sort()).toEqual(rows.map((o) => o.iterationId).sort());
  expect(payload.missions?.map((m) => m.missionId).sort()).toEqual(['m-a', 'm-b', 'm-c']);
  expect(payload.missions?.[0]).toMatchObject({ missionId: payload.missionId, iterationId: payload.iterationId, dueAt: payload.dueAt });

  const [solo] = await ledger(db.sql, 'one');
  const one = await wpt.notifications(subs['one']!.clientHash);
  expect(one.map((m) => JSON.parse(m) as unknown)).toEqual([{ type: 'mission-due', missionId: 'm-solo', iterationId: solo!.iterationId, dueAt: expect.stringMatching(/^\d{4}-/), attempt: 1 }]);
  const m = await c.scrape();
  expect(m.value('mana_ai_push_sends_total', { origin: wpt.origin, outcome: 'delivered' })).toBe(2);
});

it('missions of one user due within the push window of the first: one push naming all, sent when the last falls due; one past the window: its own push', async () => {
  const { publicKey } = (await (await fetch(`${c.url}/v1/push/vapid-public-key`)).json()) as { publicKey: string };
  const sub = await wpt.subscribe(publicKey);
  expect((await putSubscription(c.url, await c.token('spread'), 'phone', sub)).status).toBe(201);
  // PUSH_BATCH_WINDOW_MS is 3 s by default: 0.0, +1.2 and +2.0 s go together, +4.5 s does not.
  const first = Date.now() + 500;
  const at = (ms: number) => new Date(first + ms).toISOString();
  await insertPlannable(db.sql, [
    { userId: 'spread', missionId: 's-0', nextRunAt: at(0) },
    { userId: 'spread', missionId: 's-1', nextRunAt: at(1200) },
    { userId: 'spread', missionId: 's-2', nextRunAt: at(2000) },
    { userId: 'spread', missionId: 's-late', nextRunAt: at(4500) },
  ]);
  await waitFor(async () => (await wpt.notifications(sub.clientHash)).length > 0, 10_000, 'the first push');
  const sentAt = Date.now();
  expect(sentAt).toBeGreaterThanOrEqual(first + 2000);
  const [batch] = (await wpt.notifications(sub.clientHash)).map((m) => PushNudgePayload.parse(JSON.parse(m)));
  expect(batch!.missions?.map((m) => m.missionId).sort()).toEqual(['s-0', 's-1', 's-2']);
  await waitFor(async () => (await wpt.notifications(sub.clientHash)).length > 1, 10_000, 'the second push');
  await sleep(1000);
  const all = (await wpt.notifications(sub.clientHash)).map((m) => PushNudgePayload.parse(JSON.parse(m)));
  expect(all).toHaveLength(2);
  expect(all[1]).toMatchObject({ missionId: 's-late' });
  const rows = await ledger(db.sql, 'spread');
  expect(rows.map((o) => [o.missionId, o.status, o.channel])).toEqual(
    expect.arrayContaining([
      ['s-0', 'nudged', 'push'],
      ['s-1', 'nudged', 'push'],
      ['s-2', 'nudged', 'push'],
      ['s-late', 'nudged', 'push'],
    ]),
  );
  expect(rows).toHaveLength(4);
});
