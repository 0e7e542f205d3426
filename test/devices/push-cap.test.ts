/**
 * The per-user cap on push subscriptions, through the real PUT
 * /v1/devices/:deviceId/push-subscription on two coordinators sharing one
 * database: 60 concurrent registrations of one user on 60 device ids store
 * exactly the cap, the rest are refused with a 409 naming it (each counted),
 * refreshing a stored endpoint still works at the cap, and removing one
 * makes room.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { subscriptionKeys } from '../nudge/web-push-helpers.js';
import { putSubscription, startCaptured, type CapturedCoordinator } from '../faults/support.js';

const ORIGIN = 'http://127.0.0.1:9';
let db: TestDb;
let a: CapturedCoordinator;
let b: CapturedCoordinator;

beforeAll(async () => {
  db = await createTestDb({ poolMax: 10 });
  const env = { PUSH_ENDPOINT_ALLOWLIST: ORIGIN, RATE_LIMIT_PER_MINUTE: '10000', TICK_ENABLED: 'false', PUSH_MAX_SUBSCRIPTIONS_PER_USER: '10' };
  a = await startCaptured(db.sql, { ...env, INSTANCE_ID: 'cap-a' });
  b = await startCaptured(db.sql, { ...env, INSTANCE_ID: 'cap-b' });
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await db?.drop();
});

async function stored(userId: string): Promise<string[]> {
  const rows = await db.sql<{ endpoint: string }[]>`SELECT endpoint FROM mana_ai.push_subscriptions WHERE user_id = ${userId} ORDER BY endpoint`;
  return rows.map((r) => r.endpoint);
}

describe('push subscriptions per user', () => {
  it('60 concurrent registrations on 60 device ids over two instances: exactly 10 stored, 50 refused with 409', async () => {
    const token = await a.token('flooder');
    const subs = Array.from({ length: 60 }, (_, i) => ({ endpoint: `${ORIGIN}/push/flood-${i}`, keys: subscriptionKeys() }));
    const results = await Promise.all(subs.map((s, i) => putSubscription(i % 2 === 0 ? a.url : b.url, token, `device-${i}`, s)));

    expect(results.filter((r) => r.status === 201)).toHaveLength(10);
    const refused = results.filter((r) => r.status === 409);
    expect(refused).toHaveLength(50);
    expect(refused[0]!.body.error).toMatchObject({ code: 'subscription_limit' });
    expect(refused[0]!.body.error!.message).toContain('PUSH_MAX_SUBSCRIPTIONS_PER_USER');
    expect(await stored('flooder')).toHaveLength(10);
    const counted = (await a.scrape()).value('mana_ai_cap_refused_total', { cap: 'push_per_user' }) + (await b.scrape()).value('mana_ai_cap_refused_total', { cap: 'push_per_user' });
    expect(counted).toBe(50);

    // At the cap, a stored endpoint still refreshes (its keys rotate), and another user is unaffected.
    const kept = (await stored('flooder'))[0]!;
    const deviceOfKept = `device-${kept.split('flood-')[1]}`;
    expect((await putSubscription(a.url, token, deviceOfKept, { endpoint: kept, keys: subscriptionKeys() })).status).toBe(200);
    expect((await putSubscription(b.url, await b.token('neighbour'), 'd1', { endpoint: `${ORIGIN}/push/neighbour`, keys: subscriptionKeys() })).status).toBe(201);

    // Removing one device's subscription makes room for exactly one more.
    const del = await fetch(`${a.url}/v1/devices/${deviceOfKept}/push-subscription`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(del.status).toBe(204);
    expect((await putSubscription(b.url, token, 'device-new', { endpoint: `${ORIGIN}/push/new`, keys: subscriptionKeys() })).status).toBe(201);
    expect((await putSubscription(b.url, token, 'device-newer', { endpoint: `${ORIGIN}/push/newer`, keys: subscriptionKeys() })).status).toBe(409);
    expect(await stored('flooder')).toHaveLength(10);
  }, 30_000);
});
