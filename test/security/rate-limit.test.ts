/**
 * Per-user rate limits on the subscription and claim endpoints, over real
 * HTTP and the real socket: once a user's budget is spent the answer is 429
 * with a Retry-After in seconds (on the socket: a claim-result refused as
 * rate-limited, sharing the HTTP claim budget), other users are unaffected,
 * and every refusal is counted in mana_ai_rate_limited_total{limit}.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { connectClient, type WsClient } from '../support/coordinator.js';
import { subscriptionKeys } from '../nudge/web-push-helpers.js';
import { putSubscription, startCaptured, type CapturedCoordinator } from '../faults/support.js';

/** 6 per minute: one token every 10 s, a burst of 10 (the limiter's minimum). */
const PER_MINUTE = 6;
const BURST = 10;

let db: TestDb;
let c: CapturedCoordinator;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb();
  c = await startCaptured(db.sql, { RATE_LIMIT_PER_MINUTE: String(PER_MINUTE), PUSH_ENDPOINT_ALLOWLIST: 'http://127.0.0.1:9', TICK_ENABLED: 'false' });
});

afterAll(async () => {
  await Promise.all(clients.map((cl) => cl.close()));
  await c?.stop();
  await db?.drop();
});

async function claim(token: string, deviceId = 'd1') {
  const res = await fetch(`${c.url}/v1/occurrences/${crypto.randomUUID()}/claim`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ deviceId }),
  });
  const body = (await res.json()) as { error?: { code: string; message: string } };
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body };
}

describe('per-user rate limits', () => {
  it('claims: the burst passes, then 429 with Retry-After; the socket shares the budget; others are unaffected', async () => {
    const alice = await c.token('alice');
    const statuses: number[] = [];
    for (let i = 0; i < BURST; i++) statuses.push((await claim(alice)).status);
    // Unknown occurrences: 404, but each took a token.
    expect(statuses).toEqual(Array(BURST).fill(404));

    const limited = await claim(alice);
    expect(limited.status).toBe(429);
    expect(limited.body.error?.code).toBe('rate_limited');
    const retryAfter = Number(limited.retryAfter);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60 / PER_MINUTE);

    // The socket's claim frames draw from the same budget.
    const ws = await connectClient(c.wsUrl, { token: alice, deviceId: 'd2' });
    clients.push(ws);
    const id = crypto.randomUUID();
    ws.send({ type: 'claim', iterationId: id });
    const refused = await ws.next('claim-result');
    expect(refused).toMatchObject({ iterationId: id, granted: false });
    expect(refused.reason).toMatch(/^rate-limited; retry in \d+ s$/);

    // Bob has his own budget.
    const bob = await c.token('bob');
    expect((await claim(bob)).status).toBe(404);

    const m = await c.scrape();
    expect(m.value('mana_ai_rate_limited_total', { limit: 'claims' })).toBe(2);
  });

  it('subscriptions: the burst passes, then 429 with Retry-After; others are unaffected', async () => {
    const carol = await c.token('carol');
    const statuses: number[] = [];
    for (let i = 0; i < BURST; i++) {
      statuses.push((await putSubscription(c.url, carol, `d${i}`, { endpoint: `http://127.0.0.1:9/push/${i}`, keys: subscriptionKeys() })).status);
    }
    expect(statuses).toEqual(Array(BURST).fill(201));
    const res = await fetch(`${c.url}/v1/devices/d0/push-subscription`, { method: 'DELETE', headers: { authorization: `Bearer ${carol}` } });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limited');

    const dave = await c.token('dave');
    expect((await putSubscription(c.url, dave, 'd0', { endpoint: 'http://127.0.0.1:9/push/dave', keys: subscriptionKeys() })).status).toBe(201);
    expect((await c.scrape()).value('mana_ai_rate_limited_total', { limit: 'subscriptions' })).toBe(1);
  });
});
