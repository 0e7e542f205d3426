/**
 * Downstream faults on the Web Push side, end to end: a real coordinator, a
 * real Postgres, real push services on loopback (four node:http servers that
 * answer 500, 429, 410 or never; web-push-testing that accepts), a stub
 * mana-llm. Users are reachable only by push and no device ever claims.
 *
 * What must hold: every occurrence ends in exactly one server plan (one
 * sync_changes row carrying its iteration, listed once by the projection);
 * a 410 removes the subscription and falls back at once; the failure of one
 * push service never holds up the scheduler for anyone else; and each
 * outcome shows in /metrics under the push service's origin.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { connectClient, inMs, sleep, waitFor, type WsClient } from '../support/coordinator.js';
import { subscriptionKeys } from '../nudge/web-push-helpers.js';
import { startWebPushTesting, type WebPushTesting } from '../nudge/web-push-testing-server.js';
import {
  insertPlannable,
  ledger,
  planCount,
  putSubscription,
  startCaptured,
  startFaultServer,
  type CapturedCoordinator,
  type FaultServer,
} from './support.js';

const PUSH_CLAIM_TIMEOUT_MS = 4000;
const PUSH_TIMEOUT_MS = 2000;

let db: TestDb;
let llm: LlmStub;
let wpt: WebPushTesting;
let c: CapturedCoordinator;
const servers: Record<'e500' | 'e429' | 'e410' | 'hang', FaultServer> = {} as never;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb({ poolMax: 8 });
  llm = await startLlmStub();
  wpt = await startWebPushTesting();
  servers.e500 = await startFaultServer((_req, res) => res.writeHead(500).end('push service broke'));
  servers.e429 = await startFaultServer((_req, res) => res.writeHead(429, { 'retry-after': '1' }).end('slow down'));
  servers.e410 = await startFaultServer((_req, res) => res.writeHead(410).end('unsubscribed'));
  servers.hang = await startFaultServer(() => undefined);
  c = await startCaptured(db.sql, {
    INSTANCE_ID: 'push-faults',
    MANA_LLM_URL: llm.url,
    PUSH_ENDPOINT_ALLOWLIST: [wpt.origin, ...Object.values(servers).map((s) => s.origin)].join(','),
    PUSH_CLAIM_TIMEOUT_MS: String(PUSH_CLAIM_TIMEOUT_MS),
    PUSH_TIMEOUT_MS: String(PUSH_TIMEOUT_MS),
    WS_CLAIM_TIMEOUT_MS: '60000',
  });
});

afterAll(async () => {
  await Promise.all(clients.map((cl) => cl.close()));
  await c?.stop();
  await Promise.all([llm?.close(), wpt?.close(), ...Object.values(servers).map((s) => s.close())]);
  await db?.drop();
});

async function subscribe(userId: string, endpoint: string, keys = subscriptionKeys()): Promise<void> {
  const put = await putSubscription(c.url, await c.token(userId), 'phone', { endpoint, keys });
  expect(put.status, JSON.stringify(put.body)).toBe(201);
}

async function plannedOccurrence(userId: string, timeoutMs = 20_000) {
  return waitFor(async () => (await ledger(db.sql, userId)).find((o) => o.status === 'planned'), timeoutMs, `${userId}'s occurrence to be planned`);
}

async function subscriptionsOf(users: string[]): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.push_subscriptions WHERE user_id = ANY(${users}::text[])`;
  return row!.n;
}

/** The plan count once the projection has read the write back (a pass or two after it). */
async function projectedOnce(userId: string, iterationId: string) {
  await waitFor(async () => (await planCount(db.sql, userId, 'm', iterationId)).projected > 0, 5000, `the projection to show ${userId}'s plan`);
  return planCount(db.sql, userId, 'm', iterationId);
}

describe('push service faults', () => {
  it('a 410 removes the subscription and hands the occurrence to the server at once', async () => {
    await subscribe('u410', `${servers.e410.origin}/push/secret-410`);
    const started = Date.now();
    await insertPlannable(db.sql, [{ userId: 'u410', missionId: 'm', nextRunAt: inMs(-1000) }]);
    const occ = await plannedOccurrence('u410');
    // Not after the claim deadline: nobody can be woken, so waiting for one is pointless.
    expect(Date.now() - started).toBeLessThan(PUSH_CLAIM_TIMEOUT_MS);
    expect(servers.e410.requests).toHaveLength(1);
    expect(await subscriptionsOf(['u410'])).toBe(0);
    expect(await projectedOnce('u410', occ.iterationId)).toEqual({ rows: 1, projected: 1 });
  });

  it('500, 429, a hang and an unclaimed delivery each end in exactly one server plan; nobody else waits for them', async () => {
    const { publicKey } = (await (await fetch(`${c.url}/v1/push/vapid-public-key`)).json()) as { publicKey: string };
    const wptSub = await wpt.subscribe(publicKey);
    await subscribe('u500', `${servers.e500.origin}/push/secret-500`);
    await subscribe('u429', `${servers.e429.origin}/push/secret-429`);
    await subscribe('uhang', `${servers.hang.origin}/push/secret-hang`);
    await subscribe('uok', wptSub.endpoint, wptSub.keys);
    // A user with an open socket, due a moment later: the hanging push service must not delay this nudge.
    const w = await connectClient(c.wsUrl, { token: await c.token('uws'), deviceId: 'laptop' });
    clients.push(w);

    const users = ['u500', 'u429', 'uhang', 'uok'];
    await insertPlannable(db.sql, users.map((userId) => ({ userId, missionId: 'm', nextRunAt: inMs(-500) })));
    await waitFor(() => servers.hang.requests.length > 0, 5000, 'the first request to the hanging push service');
    const wsDueAt = Date.now() + 700;
    await insertPlannable(db.sql, [{ userId: 'uws', missionId: 'm', nextRunAt: new Date(wsDueAt).toISOString() }]);
    await w.next('mission-due', undefined, 10_000);
    // One attempt alone hangs PUSH_TIMEOUT_MS; a pass that waited for it would deliver this nudge that late.
    expect(Date.now() - wsDueAt).toBeLessThan(PUSH_TIMEOUT_MS / 2);

    const planned = Object.fromEntries(await Promise.all(users.map(async (u) => [u, await plannedOccurrence(u)] as const)));
    // Let the retries of the failing services run out and a few more passes go by.
    await waitFor(() => servers.hang.requests.length >= 4, 15_000, 'the hanging service to be tried 4 times');
    await sleep(PUSH_TIMEOUT_MS + 500);
    await c.planner!.idle();

    for (const u of users) {
      const rows = await ledger(db.sql, u);
      expect(rows, u).toEqual([expect.objectContaining({ status: 'planned', channel: 'server', attempts: 1 })]);
      expect(await projectedOnce(u, planned[u]!.iterationId), u).toEqual({ rows: 1, projected: 1 });
    }
    // Each failing service was tried once plus 3 retries, and its subscription kept (it may recover).
    expect(servers.e500.requests).toHaveLength(4);
    expect(servers.e429.requests).toHaveLength(4);
    expect(servers.hang.requests).toHaveLength(4);
    expect(await wpt.notifications(wptSub.clientHash)).toHaveLength(1);
    expect(await subscriptionsOf(['u500', 'u429', 'uhang', 'uok'])).toBe(4);
    // The socket user's occurrence went by WebSocket, not by the fallback.
    expect(await ledger(db.sql, 'uws')).toEqual([expect.objectContaining({ status: 'nudged', channel: 'ws' })]);

    const m = await c.scrape();
    const sends = (origin: string, outcome: string) => m.value('mana_ai_push_sends_total', { origin, outcome });
    expect(sends(servers.e500.origin, 'failed')).toBe(1);
    expect(sends(servers.e500.origin, 'retry')).toBe(3);
    expect(sends(servers.e429.origin, 'failed')).toBe(1);
    expect(sends(servers.e429.origin, 'retry')).toBe(3);
    expect(sends(servers.hang.origin, 'failed')).toBe(1);
    expect(sends(servers.e410.origin, 'gone')).toBe(1);
    expect(sends(wpt.origin, 'delivered')).toBe(1);
    // Four deadlines passed (500, 429, hang, the unclaimed delivery); the 410 fell back without one.
    expect(m.value('mana_ai_occurrences_expired_total')).toBe(4);
    expect(m.value('mana_ai_planner_runs_total', { outcome: 'planned' })).toBe(5);
    expect(m.value('mana_ai_push_send_duration_seconds_count', { origin: servers.hang.origin })).toBe(4);
  });
});
