/**
 * The service key on /internal/*: required on every internal route, compared
 * in constant time. "Constant time" is checked structurally — every
 * comparison goes through crypto.timingSafeEqual over two 32-byte SHA-256
 * digests, whatever the lengths of the keys, so neither content nor length
 * shapes the comparison — and behaviourally: wrong keys of every length
 * (empty, one byte, one byte short, the right length, one byte long, a
 * prefix, the key with a suffix, 8 KB) are all 401 over real HTTP, counted
 * in mana_ai_auth_refused_total.
 */
import * as nodeCrypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return { ...real, timingSafeEqual: vi.fn(real.timingSafeEqual) };
});

const { serviceKeyMatches } = await import('../../src/http/service-auth.js');
const { createTestDb } = await import('../support/db.js');
const { SERVICE_KEY, startCaptured } = await import('../faults/support.js');

let db: Awaited<ReturnType<typeof createTestDb>>;
let c: Awaited<ReturnType<typeof startCaptured>>;

beforeAll(async () => {
  db = await createTestDb();
  // Many wrong keys from one address: lift the per-address limit (test/security/service-key-throttle.test.ts tests it).
  c = await startCaptured(db.sql, { TICK_ENABLED: 'false', RATE_LIMIT_PER_MINUTE: '100000' });
});

afterAll(async () => {
  await c?.stop();
  await db?.drop();
});

const WRONG_KEYS = [
  '',
  'x',
  SERVICE_KEY.slice(0, -1),
  `${SERVICE_KEY.slice(0, -1)}${SERVICE_KEY.endsWith('x') ? 'y' : 'x'}`,
  `${SERVICE_KEY}x`,
  SERVICE_KEY.slice(0, 8),
  SERVICE_KEY.toUpperCase(),
  // (Surrounding whitespace is not part of a header value in HTTP, so ` key` IS the key.)
  `${SERVICE_KEY.slice(0, 4)} ${SERVICE_KEY.slice(5)}`,
  'k'.repeat(8192),
  'dev-service-key',
];

describe('service key comparison', () => {
  it('always compares two 32-byte digests with timingSafeEqual, whatever the lengths', () => {
    const tse = vi.mocked(nodeCrypto.timingSafeEqual);
    for (const given of [...WRONG_KEYS, SERVICE_KEY, undefined]) {
      tse.mockClear();
      const ok = serviceKeyMatches(SERVICE_KEY, given);
      expect(ok).toBe(given === SERVICE_KEY);
      expect(tse).toHaveBeenCalledTimes(1);
      const [a, b] = tse.mock.calls[0]! as [Buffer, Buffer];
      expect([a.length, b.length]).toEqual([32, 32]);
    }
  });
});

describe('service key over HTTP', () => {
  const routes: [string, string][] = [
    ['POST', '/internal/tick'],
    ['GET', '/internal/missions/due'],
    ['GET', '/internal/occurrences'],
    ['GET', '/internal/occurrences?userId=alice'],
    ['POST', '/internal/anything-else'],
  ];

  it('every internal route refuses a missing or wrong key with 401, whatever its length', async () => {
    const before = (await c.scrape()).value('mana_ai_auth_refused_total', { transport: 'http', code: 'service_key_required' });
    let refused = 0;
    for (const [method, path] of routes) {
      for (const key of [undefined, ...WRONG_KEYS]) {
        const res = await fetch(`${c.url}${path}`, { method, headers: key === undefined ? {} : { 'x-service-key': key } });
        const body = (await res.json()) as { error?: { code: string } };
        expect(res.status, `${method} ${path} key of ${key?.length ?? 'no'} chars`).toBe(401);
        expect(body.error?.code).toBe('service_key_required');
        refused++;
      }
    }
    // A user token is not a service key.
    const userToken = await c.token('alice');
    const asUser = await fetch(`${c.url}/internal/occurrences`, { headers: { authorization: `Bearer ${userToken}` } });
    expect(asUser.status).toBe(401);
    refused++;
    const after = (await c.scrape()).value('mana_ai_auth_refused_total', { transport: 'http', code: 'service_key_required' });
    expect(after - before).toBe(refused);
  });

  it('the right key opens them (control)', async () => {
    for (const [method, path] of routes.slice(0, 4)) {
      const res = await fetch(`${c.url}${path}`, { method, headers: { 'x-service-key': SERVICE_KEY } });
      expect(res.status, `${method} ${path}`).toBe(200);
      await res.arrayBuffer();
    }
  });
});
