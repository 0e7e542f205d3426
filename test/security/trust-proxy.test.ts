/**
 * Behind an ingress every caller's socket is the proxy's: with TRUST_PROXY
 * naming the proxy, wrong service keys are counted per forwarded client
 * address, so one client guessing does not throttle another, and the right
 * key always gets through. Over real HTTP; the "proxy" is the test itself on
 * 127.0.0.1, writing X-Forwarded-For as an ingress appends it.
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
  c = await startCaptured(db.sql, { TICK_ENABLED: 'false', RATE_LIMIT_PER_MINUTE: '6', TRUST_PROXY: '127.0.0.0/8, ::1' });
});

afterAll(async () => {
  await c?.stop();
  await db?.drop();
});

/** GET /internal/missions/due through "the proxy": `forwarded` is the X-Forwarded-For it sends. */
function viaProxy(key: string, forwarded: string, path = '/internal/missions/due'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${c.url}${path}`, { headers: { 'x-service-key': key, 'x-forwarded-for': forwarded }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TRUST_PROXY', () => {
  it('counts wrong keys per forwarded client: one client guessing throttles only itself, and never the right key', async () => {
    const guesser = '203.0.113.7';
    const statuses: number[] = [];
    for (let i = 0; i < BURST; i++) statuses.push(await viaProxy(`wrong-${i}`, guesser));
    expect(statuses).toEqual(Array(BURST).fill(401));
    expect(await viaProxy('wrong-again', guesser)).toBe(429);
    // A client writing its own X-Forwarded-For entry: the proxy appends the address it saw, and that one counts.
    expect(await viaProxy('wrong-again', `198.51.100.1, ${guesser}`)).toBe(429);

    // Another client behind the same proxy has its own budget, and the operators' right key works from anywhere.
    expect(await viaProxy('wrong', '203.0.113.8')).toBe(401);
    expect(await viaProxy(SERVICE_KEY, '203.0.113.8')).toBe(200);
    expect(await viaProxy(SERVICE_KEY, guesser)).toBe(200);
    expect(await viaProxy(SERVICE_KEY, guesser, '/ready')).toBe(200);
  });
});
