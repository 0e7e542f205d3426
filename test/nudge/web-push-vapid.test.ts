import { createPublicKey, verify } from 'node:crypto';
import webpush from 'web-push';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createVapidHeaders, generateVapidKeys, validateVapidKeys } from '../../src/nudge/vapid.js';

const keys = generateVapidKeys();
const subject = 'mailto:ops@mana.example';
const AUD = 'https://fcm.googleapis.com';

function decode(authorization: string): { header: unknown; claims: { aud: string; exp: number; sub: string }; valid: boolean } {
  const m = /^vapid t=([^,]+), k=(.+)$/.exec(authorization);
  if (!m) throw new Error(`not a vapid header: ${authorization}`);
  const [h, p, sig] = m[1]!.split('.') as [string, string, string];
  const raw = Buffer.from(m[2]!, 'base64url');
  const key = createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33).toString('base64url') },
    format: 'jwk',
  });
  const valid = verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
  return { header: JSON.parse(Buffer.from(h, 'base64url').toString()), claims: JSON.parse(Buffer.from(p, 'base64url').toString()), valid };
}

afterEach(() => vi.restoreAllMocks());

describe('createVapidHeaders', () => {
  it('signs an ES256 JWT for the audience, valid 12 h, in the aes128gcm "vapid t=…, k=…" form', () => {
    const now = Date.now();
    const vapid = createVapidHeaders({ ...keys, subject, now: () => now });
    const { header, claims, valid } = decode(vapid.headersFor(AUD).Authorization);
    expect(header).toEqual({ typ: 'JWT', alg: 'ES256' });
    expect(claims).toEqual({ aud: AUD, sub: subject, exp: Math.floor(now / 1000) + 12 * 3600 });
    expect(valid).toBe(true);
    expect(vapid.publicKey).toBe(keys.publicKey);
  });

  it('caches one JWT per audience and re-signs only when less than an hour remains', () => {
    const spy = vi.spyOn(webpush, 'getVapidHeaders');
    const t0 = Date.now();
    let t = t0;
    const vapid = createVapidHeaders({ ...keys, subject, now: () => t });
    const first = vapid.headersFor(AUD).Authorization;
    for (let i = 0; i < 100; i++) expect(vapid.headersFor(AUD).Authorization).toBe(first);
    const moz = vapid.headersFor('https://updates.push.services.mozilla.com').Authorization;
    expect(moz).not.toBe(first);
    expect(spy).toHaveBeenCalledTimes(2);

    t = t0 + 10.9 * 3600_000; // 1.1 h left
    expect(vapid.headersFor(AUD).Authorization).toBe(first);
    expect(spy).toHaveBeenCalledTimes(2);

    t = t0 + 11.1 * 3600_000; // 0.9 h left
    const second = vapid.headersFor(AUD).Authorization;
    expect(second).not.toBe(first);
    expect(decode(second).claims.exp).toBe(Math.floor(t / 1000) + 12 * 3600);
    expect(spy).toHaveBeenCalledTimes(3);
  });

  it('with a short ttl, refreshes after three quarters of it', () => {
    const spy = vi.spyOn(webpush, 'getVapidHeaders');
    const t0 = Date.now();
    let t = t0;
    const vapid = createVapidHeaders({ ...keys, subject, now: () => t, ttlSeconds: 400 });
    vapid.headersFor(AUD);
    t = t0 + 299_000;
    vapid.headersFor(AUD);
    expect(spy).toHaveBeenCalledTimes(1);
    t = t0 + 301_000;
    vapid.headersFor(AUD);
    expect(spy).toHaveBeenCalledTimes(2);
  });

  it('refuses a bad configuration at creation', () => {
    const other = generateVapidKeys();
    expect(() => createVapidHeaders({ ...keys, subject, ttlSeconds: 13 * 3600 })).toThrow(/ttlSeconds/);
    expect(() => createVapidHeaders({ ...keys, subject: 'ops@mana.example' })).toThrow(/mailto: or https:/);
    expect(() => createVapidHeaders({ ...keys, subject: 'http://mana.example' })).toThrow(/got http:/);
    expect(() => createVapidHeaders({ publicKey: other.publicKey, privateKey: keys.privateKey, subject })).toThrow(/match/);
  });
});

describe('validateVapidKeys', () => {
  it('accepts a generated pair', () => {
    expect(validateVapidKeys(keys.publicKey, keys.privateKey)).toEqual({ ok: true });
  });

  it('says what is wrong', () => {
    const other = generateVapidKeys();
    expect(validateVapidKeys(other.publicKey, keys.privateKey)).toEqual({
      ok: false,
      reason: 'expected the VAPID public key to match the private key, got a different key',
    });
    expect(validateVapidKeys(keys.publicKey.slice(0, 40), keys.privateKey)).toMatchObject({ ok: false, reason: expect.stringMatching(/65-byte/) });
    expect(validateVapidKeys(keys.publicKey, `${keys.privateKey}==`)).toMatchObject({ ok: false, reason: expect.stringMatching(/base64url/) });
    expect(validateVapidKeys(keys.publicKey, Buffer.alloc(32).toString('base64url'))).toMatchObject({ ok: false });
  });
});
