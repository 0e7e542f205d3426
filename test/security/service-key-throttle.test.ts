/**
 * Wrong service keys are rate limited per client address, over real HTTP:
 * after the burst of 401s an address gets 429 with Retry-After for every
 * further wrong key, while the right key still gets through (wrong keys from
 * a shared address, as every caller behind an ingress has, must not lock the
 * operators out); another address (127.0.0.2, a second loopback source) is
 * unaffected and right keys never spend the budget. Without TRUST_PROXY a
 * forwarded address is not believed.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { SERVICE_KEY, startCaptured, type CapturedCoordinator } from '../faults/support.js';

/** 6 per minute: a burst of 10 (the limiter's minimum). */
const BURST = 10;
let db: TestDb;
let c: CapturedCoordinator;

beforeAll(async () => {
  db = await createTestDb();
  c = await startCaptured(db.sql, { TICK_ENABLED: 'false', RATE_LIMIT_PER_MINUTE: '6' });
});

afterAll(async () => {
  await c?.stop();
  await db?.drop();
});

function due(key: string, localAddress = '127.0.0.1'): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return get('/internal/missions/due', { 'x-service-key': key }, localAddress);
}

function get(path: string, headers: Record<string, string>, localAddress: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${c.url}${path}`, { headers, localAddress, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('wrong service keys per client address', () => {
  it('the burst of 401s, then 429 with Retry-After for wrong keys while the right key still works; another address unaffected', async () => {
    // Right keys spend nothing.
    for (let i = 0; i < 2 * BURST; i++) expect((await due(SERVICE_KEY)).status).toBe(200);

    const statuses: number[] = [];
    for (let i = 0; i < BURST; i++) statuses.push((await due(`wrong-${i}`)).status);
    expect(statuses).toEqual(Array(BURST).fill(401));

    const limited = await due('wrong-again');
    expect(limited.status).toBe(429);
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(limited.body)).toMatchObject({ error: { code: 'rate_limited' } });
    // The right key is never blocked by the wrong ones.
    expect((await due(SERVICE_KEY)).status).toBe(200);
    // An X-Forwarded-For the caller wrote itself changes nothing without TRUST_PROXY.
    expect((await get('/internal/missions/due', { 'x-service-key': 'wrong', 'x-forwarded-for': '203.0.113.99' }, '127.0.0.1')).status).toBe(429);

    // Another client address has its own budget.
    expect((await due('wrong', '127.0.0.2')).status).toBe(401);
    expect((await due(SERVICE_KEY, '127.0.0.2')).status).toBe(200);

    expect((await c.scrape()).value('mana_ai_rate_limited_total', { limit: 'service-key' })).toBe(2);
  });

  it('/health answers a wrong key with the bare status, but the wrong keys count: past the burst it is 429, while plain probes and the right key stay 200', async () => {
    const from = '127.0.0.3';
    for (let i = 0; i < BURST; i++) {
      const res = await get('/health', { 'x-service-key': `wrong-${i}` }, from);
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toEqual({ status: 'ok' });
    }
    expect((await get('/health', { 'x-service-key': 'wrong-again' }, from)).status).toBe(429);
    expect((await get('/ready', { 'x-service-key': 'wrong-again' }, from)).status).toBe(429);
    expect((await get('/ready', { 'x-service-key': SERVICE_KEY }, from)).status).toBe(200);
    // A probe that presents no key is never throttled.
    expect((await get('/health', {}, from)).status).toBe(200);
  });
});
