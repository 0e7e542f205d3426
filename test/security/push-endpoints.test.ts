/**
 * Push endpoints are user-supplied URLs the server will POST to: through the
 * real PUT /v1/devices/:deviceId/push-subscription, everything but an
 * https: endpoint on an allowlisted push service whose every address is
 * public (or an origin the operator listed exactly) is refused with a 400
 * that says what was expected — and never stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { testSeed } from '../support/seed.js';
import { subscriptionKeys } from '../nudge/web-push-helpers.js';
import { putSubscription, startCaptured, type CapturedCoordinator } from '../faults/support.js';

/** The real services' patterns, an exact local origin, and a bare host that resolves to loopback. */
const LOCAL_ORIGIN = 'http://127.0.0.1:9';
const ALLOWLIST = `*.googleapis.com,*.push.services.mozilla.com,${LOCAL_ORIGIN},localhost`;

let db: TestDb;
let c: CapturedCoordinator;
let token: string;

beforeAll(async () => {
  db = await createTestDb();
  c = await startCaptured(db.sql, { PUSH_ENDPOINT_ALLOWLIST: ALLOWLIST, RATE_LIMIT_PER_MINUTE: '10000', TICK_ENABLED: 'false' });
  token = await c.token('alice');
});

afterAll(async () => {
  await c?.stop();
  await db?.drop();
});

const REFUSED: [endpoint: string, reason: RegExp][] = [
  ['http://fcm.googleapis.com/fcm/send/abc', /expected an https: endpoint, got http:/],
  ['https://fcm.googleapis.com:8443/fcm/send/abc', /expected the default https port, got port 8443/],
  ['https://user:pw@fcm.googleapis.com/fcm/send/abc', /without user info/],
  ['https://evil.example.com/push/abc', /expected a host matching the push allowlist/],
  ['https://fcm.googleapis.com.evil.example/push/abc', /expected a host matching the push allowlist/],
  ['https://googleapis.com/push/abc', /expected a host matching the push allowlist/],
  ['https://10.0.0.1/push/abc', /expected a host matching the push allowlist/],
  ['https://127.0.0.1/push/abc', /expected a host matching the push allowlist/],
  ['https://169.254.169.254/latest/meta-data/', /expected a host matching the push allowlist/],
  ['https://100.64.0.1/push/abc', /expected a host matching the push allowlist/],
  ['https://[::1]/push/abc', /expected a host matching the push allowlist/],
  ['https://[fd00::1]/push/abc', /expected a host matching the push allowlist/],
  ['https://[::ffff:127.0.0.1]/push/abc', /expected a host matching the push allowlist/],
  ['https://[64:ff9b::7f00:1]/push/abc', /expected a host matching the push allowlist/],
  // An allowed host that resolves to loopback (the DNS check at registration).
  ['https://localhost/push/abc', /expected every address of localhost to be public, got 127\.0\.0\.1 \(loopback/],
  // The exact origin is exact: another scheme or port of the same host is not it.
  ['https://127.0.0.1:9/push/abc', /expected the default https port, got port 9/],
  ['http://127.0.0.1:10/push/abc', /expected an https: endpoint, got http:/],
  ['ftp://fcm.googleapis.com/push/abc', /expected an https: endpoint, got ftp:/],
  ['file:///etc/passwd', /expected an https: endpoint, got file:/],
];

async function stored(): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.push_subscriptions`;
  return row!.n;
}

describe('push endpoint restrictions', () => {
  for (const [endpoint, reason] of REFUSED) {
    it(`refuses ${endpoint}`, async () => {
      const res = await putSubscription(c.url, token, 'phone', { endpoint, keys: subscriptionKeys() });
      expect(res.status).toBe(400);
      expect(res.body.error?.code).toBe('endpoint_refused');
      expect(res.body.error?.message).toMatch(reason);
      // The refusal never echoes the path (a bearer secret for the push service).
      expect(res.body.error?.message).not.toContain('/push/abc');
      expect(await stored()).toBe(0);
    });
  }

  it('refuses what is not a URL, or not a subscription, at the schema', async () => {
    for (const endpoint of ['javascript:alert(1)', 'not a url', '', `${LOCAL_ORIGIN}/${'x'.repeat(3000)}`]) {
      const res = await putSubscription(c.url, token, 'phone', { endpoint, keys: subscriptionKeys() });
      expect(res.status, endpoint.slice(0, 30)).toBe(400);
    }
    const badKeys = await putSubscription(c.url, token, 'phone', { endpoint: `${LOCAL_ORIGIN}/push/ok`, keys: { p256dh: 'AAAA', auth: 'AAAA' } });
    expect(badKeys.status).toBe(400);
    expect(badKeys.body.error?.message).toMatch(/p256dh|auth/);
    expect(await stored()).toBe(0);
  });

  it('an endpoint too long to index is a 400, not a 500', async () => {
    // ~1,000 random CJK characters: within the 2,048-character limit, ~3 KB of UTF-8 that does not compress.
    const rng = testSeed('endpoint too long');
    const tail = Array.from({ length: 1000 }, () => String.fromCodePoint(0x4e00 + rng.int(0, 0x4fff))).join('');
    const res = await putSubscription(c.url, token, 'phone', { endpoint: `${LOCAL_ORIGIN}/push/${tail}`, keys: subscriptionKeys() });
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('invalid_value');
    expect(await stored()).toBe(0);
  });

  it('the exact origin the operator listed is accepted (control)', async () => {
    const res = await putSubscription(c.url, token, 'phone', { endpoint: `${LOCAL_ORIGIN}/push/ok`, keys: subscriptionKeys() });
    expect(res.status).toBe(201);
    expect(await stored()).toBe(1);
  });
});
