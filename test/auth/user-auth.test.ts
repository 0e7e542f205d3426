import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { base64url, exportSPKI, SignJWT, type JWTPayload } from 'jose';
import {
  AuthError,
  bearerToken,
  createUserAuth,
  signDevToken,
  type AuthErrorCode,
  type UserAuth,
} from '../../src/auth/user-auth.js';
import { craft, makeKey, startJwksServer, type JwksServer, type TestKey } from './jwks-support.js';

const ISSUER = 'https://auth.mana.test';
const AUDIENCE = 'mana-ai';
const TTL_MS = 10 * 60_000;

let clock = Date.now();
const now = (): number => clock;
const nowSec = (): number => Math.floor(clock / 1000);

async function sign(
  key: TestKey,
  claims: JWTPayload = {},
  header: { kid?: string | null; alg?: string } = {},
): Promise<string> {
  const kid = header.kid === null ? undefined : (header.kid ?? key.kid);
  return new SignJWT({ sub: 'user-1', iss: ISSUER, aud: AUDIENCE, iat: nowSec(), exp: nowSec() + 600, ...claims })
    .setProtectedHeader({ alg: header.alg ?? key.alg, ...(kid === undefined ? {} : { kid }) })
    .sign(key.privateKey);
}

async function expectAuthError(promise: Promise<unknown>, code: AuthErrorCode): Promise<AuthError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected AuthError ${code}`).toBeInstanceOf(AuthError);
  const authError = err as AuthError;
  expect(authError.code, authError.message).toBe(code);
  return authError;
}


describe('createUserAuth: JWKS mode', () => {
  let ed: TestKey, es: TestKey, rs: TestKey, ed2: TestKey;
  let jwks: JwksServer;

  beforeAll(async () => {
    [ed, es, rs, ed2] = await Promise.all([
      makeKey('ed-1', 'EdDSA'),
      makeKey('es-1', 'ES256'),
      makeKey('rs-1', 'RS256'),
      makeKey('ed-2', 'EdDSA'),
    ]);
  });

  beforeEach(async () => {
    clock = Date.now();
    jwks = await startJwksServer([ed.jwk, es.jwk, rs.jwk]);
  });
  afterEach(async () => {
    await jwks.close();
  });

  function auth(extra: Partial<Parameters<typeof createUserAuth>[0]> = {}): UserAuth {
    return createUserAuth({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, now, ...extra });
  }

  it('accepts EdDSA, ES256 and RS256 tokens and returns sub as userId', async () => {
    const a = auth();
    expect(a.mode).toBe('jwks');
    for (const key of [ed, es, rs]) {
      const result = await a.verify(await sign(key, { sub: `user-${key.alg}`, role: 'x' }));
      expect(result.userId).toBe(`user-${key.alg}`);
      expect(result.claims.role).toBe('x');
    }
    expect(jwks.requests).toBe(1);
  });

  it('accepts a token without kid when exactly one key fits its alg', async () => {
    await expect(auth().verify(await sign(es, {}, { kid: null }))).resolves.toMatchObject({ userId: 'user-1' });
  });

  it('refuses an expired token, honouring the clock tolerance', async () => {
    const a = auth();
    await expect(a.verify(await sign(ed, { exp: nowSec() - 10 }))).resolves.toMatchObject({ userId: 'user-1' });
    const err = await expectAuthError(a.verify(await sign(ed, { exp: nowSec() - 60 })), 'expired');
    expect(err.status).toBe(401);
    expect(err.message).toMatch(/expired at .* it is now/);
  });

  it('requires exp', async () => {
    const token = await new SignJWT({ sub: 'u', iss: ISSUER, aud: AUDIENCE })
      .setProtectedHeader({ alg: 'EdDSA', kid: ed.kid })
      .sign(ed.privateKey);
    const err = await expectAuthError(auth().verify(token), 'malformed');
    expect(err.message).toMatch(/exp/);
  });

  it('refuses a token whose nbf is in the future', async () => {
    const err = await expectAuthError(auth().verify(await sign(ed, { nbf: nowSec() + 120 })), 'not-yet-valid');
    expect(err.message).toMatch(/not valid before/);
  });

  it('refuses the wrong issuer and the wrong audience, saying what was expected', async () => {
    const a = auth();
    const iss = await expectAuthError(a.verify(await sign(ed, { iss: 'https://evil.test' })), 'wrong-issuer');
    expect(iss.message).toContain(ISSUER);
    expect(iss.message).toContain('https://evil.test');
    await expectAuthError(a.verify(await sign(ed, { iss: undefined })), 'wrong-issuer');
    const aud = await expectAuthError(a.verify(await sign(es, { aud: 'other-service' })), 'wrong-audience');
    expect(aud.message).toContain(AUDIENCE);
    expect(aud.message).toContain('other-service');
  });

  it('does not check iss/aud when none is configured', async () => {
    const a = createUserAuth({ jwksUrl: jwks.url, now });
    await expect(a.verify(await sign(ed, { iss: 'anyone', aud: 'anything' }))).resolves.toMatchObject({
      userId: 'user-1',
    });
  });

  it('refuses a missing or empty sub', async () => {
    const a = auth();
    await expectAuthError(a.verify(await sign(ed, { sub: undefined })), 'no-subject');
    await expectAuthError(a.verify(await sign(ed, { sub: '' })), 'no-subject');
  });

  it('refuses a tampered token and a token signed by a key not in the set', async () => {
    const a = auth();
    const token = await sign(ed);
    const [h, , s] = token.split('.');
    const forged = `${h}.${base64url.encode(JSON.stringify({ sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: nowSec() + 60 }))}.${s}`;
    await expectAuthError(a.verify(forged), 'bad-signature');
    // ed-2's private key, but claiming to be ed-1
    await expectAuthError(a.verify(await sign(ed2, {}, { kid: ed.kid })), 'bad-signature');
  });

  it('refuses a token whose alg does not match the key its kid names', async () => {
    // Signed with the P-256 key but naming the Ed25519 key's kid.
    await expectAuthError(auth().verify(await sign(es, {}, { kid: ed.kid })), 'alg-not-allowed');
  });

  it('refuses alg "none"', async () => {
    const token = craft({ alg: 'none', typ: 'JWT' }, { sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: nowSec() + 60 });
    const err = await expectAuthError(auth().verify(token), 'alg-not-allowed');
    expect(err.message).toContain('"none"');
    expect(jwks.requests).toBe(0);
  });

  it('refuses HS256 tokens "signed" with the public keys (algorithm confusion)', async () => {
    const a = auth();
    const payload = { sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: nowSec() + 60 };
    const rsaPem = new TextEncoder().encode(await exportSPKI(rs.publicKey));
    const viaPem = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid: rs.kid }).sign(rsaPem);
    await expectAuthError(a.verify(viaPem), 'alg-not-allowed');
    const edBytes = base64url.decode(ed.jwk.x!);
    const viaRaw = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid: ed.kid }).sign(edBytes);
    await expectAuthError(a.verify(viaRaw), 'alg-not-allowed');
    const viaJwkJson = await new SignJWT(payload)
      .setProtectedHeader({ alg: 'HS512', kid: ed.kid })
      .sign(new TextEncoder().encode(JSON.stringify(ed.jwk).padEnd(64, ' ')));
    await expectAuthError(a.verify(viaJwkJson), 'alg-not-allowed');
  });

  it('never imports a symmetric key published in the JWKS', async () => {
    jwks.keys = [...jwks.keys, { kty: 'oct', kid: 'oct-1', k: base64url.encode(new Uint8Array(32).fill(7)) }];
    const a = auth();
    await expect(a.verify(await sign(ed))).resolves.toBeTruthy();
    await expectAuthError(a.verify(await sign(es, {}, { kid: 'oct-1' })), 'unknown-key');
  });

  it('refetches once on an unknown kid, picks up a rotated-in key, and rate-limits further refetches', async () => {
    const a = auth();
    await a.verify(await sign(ed));
    expect(jwks.requests).toBe(1);

    jwks.keys = [ed.jwk, ed2.jwk]; // mana-auth rotates in ed-2
    await expect(a.verify(await sign(ed2, { sub: 'rotated' }))).resolves.toMatchObject({ userId: 'rotated' });
    expect(jwks.requests).toBe(2);
    await a.verify(await sign(ed2));
    expect(jwks.requests).toBe(2);

    // Garbage kids within the cooldown: no fetch at all.
    for (let i = 0; i < 5; i++) await expectAuthError(a.verify(await sign(ed, {}, { kid: `junk-${i}` })), 'unknown-key');
    expect(jwks.requests).toBe(2);

    clock += 31_000;
    await expectAuthError(a.verify(await sign(ed, {}, { kid: 'junk-late' })), 'unknown-key');
    expect(jwks.requests).toBe(3);
  });

  it('shares one fetch among concurrent verifies, cold and on an unknown kid', async () => {
    jwks.delayMs = 50;
    const a = auth();
    const tokens = await Promise.all([ed, es, rs, ed, es, rs, ed, es, rs, ed].map((k) => sign(k)));
    const results = await Promise.all(tokens.map((t) => a.verify(t)));
    expect(results).toHaveLength(10);
    expect(jwks.requests).toBe(1);

    jwks.keys = [ed.jwk, ed2.jwk];
    const rotated = await Promise.all(Array.from({ length: 8 }, () => sign(ed2)));
    await Promise.all(rotated.map((t) => a.verify(t)));
    expect(jwks.requests).toBe(2);
  });

  it('answers jwks-unavailable when the JWKS cannot be fetched at the first call, and recovers', async () => {
    const url = jwks.url;
    await jwks.close();
    const a = createUserAuth({ jwksUrl: url, now });
    const err = await expectAuthError(a.verify(await sign(ed)), 'jwks-unavailable');
    expect(err.status).toBe(503);
    expect(err.message).toContain(url);

    jwks = await startJwksServer([ed.jwk]);
    jwks.mode = 'error';
    const b = createUserAuth({ jwksUrl: jwks.url, now });
    await expectAuthError(b.verify(await sign(ed)), 'jwks-unavailable');
    await expectAuthError(b.verify(await sign(ed)), 'jwks-unavailable');
    expect(jwks.requests).toBe(1); // failed cold fetch is not retried per request

    jwks.mode = 'up';
    clock += 1_500;
    await expect(b.verify(await sign(ed))).resolves.toMatchObject({ userId: 'user-1' });
    expect(jwks.requests).toBe(2);
  });

  it('times out a JWKS endpoint that never answers', async () => {
    jwks.mode = 'hang';
    const a = auth({ jwksFetchTimeoutMs: 100 });
    const err = await expectAuthError(a.verify(await sign(ed)), 'jwks-unavailable');
    expect(err.message).toMatch(/abort|timeout/i);
  });

  it('keeps serving cached keys when a refresh after the TTL fails', async () => {
    const a = auth();
    await a.verify(await sign(ed));
    expect(jwks.requests).toBe(1);

    jwks.mode = 'error';
    clock += TTL_MS + 1;
    await expect(a.verify(await sign(ed, { sub: 'still-ok' }))).resolves.toMatchObject({ userId: 'still-ok' });
    expect(jwks.requests).toBe(2); // the refresh was attempted
    await a.verify(await sign(rs));
    expect(jwks.requests).toBe(2); // and is not retried on every request

    clock += 31_000;
    await a.verify(await sign(es));
    expect(jwks.requests).toBe(3);
  });

  it('drops a key that the refreshed set no longer lists', async () => {
    const a = auth();
    await a.verify(await sign(rs));
    jwks.keys = [ed.jwk];
    clock += TTL_MS + 1;
    await expectAuthError(a.verify(await sign(rs)), 'unknown-key');
    expect(jwks.requests).toBe(2); // the TTL refresh counts; no second, unknown-kid fetch on top
    await expect(a.verify(await sign(ed))).resolves.toBeTruthy();
  });

  it('calls malformed input malformed and empty input missing', async () => {
    const a = auth();
    await expectAuthError(a.verify(''), 'missing');
    await expectAuthError(a.verify('not-a-jwt'), 'malformed');
    await expectAuthError(a.verify('a.b.c'), 'malformed');
    await expectAuthError(a.verify(`${base64url.encode('not json')}.e30.sig`), 'malformed');
    expect(jwks.requests).toBe(0);
  });
});

describe('createUserAuth: dev mode', () => {
  const secret = new Uint8Array(32).map((_, i) => i * 7 + 1);

  beforeEach(() => {
    clock = Date.now();
  });

  it('verifies what signDevToken signs, with issuer and audience', async () => {
    const a = createUserAuth({ devSecret: secret, issuer: 'dev', audience: 'mana-ai', now });
    expect(a.mode).toBe('dev');
    const token = await signDevToken(secret, 'alice', 60, { issuer: 'dev', audience: 'mana-ai', now });
    const { userId, claims } = await a.verify(token);
    expect(userId).toBe('alice');
    expect(claims.exp).toBe(nowSec() + 60);
    await expectAuthError(a.verify(await signDevToken(secret, 'alice', 60, { now })), 'wrong-issuer');
  });

  it('defaults to a 12 h lifetime', async () => {
    const a = createUserAuth({ devSecret: secret, now });
    const token = await signDevToken(secret, 'bob', undefined, { now });
    expect((await a.verify(token)).claims.exp).toBe(nowSec() + 12 * 3600);
    clock += 12 * 3600 * 1000 + 31_000;
    await expectAuthError(a.verify(token), 'expired');
  });

  it('refuses a token signed with a different secret', async () => {
    const a = createUserAuth({ devSecret: secret, now });
    const other = new Uint8Array(32).fill(9);
    await expectAuthError(a.verify(await signDevToken(other, 'mallory', 60, { now })), 'bad-signature');
  });

  it('refuses alg none, HS512 and asymmetric algorithms', async () => {
    const a = createUserAuth({ devSecret: secret, now });
    await expectAuthError(a.verify(craft({ alg: 'none' }, { sub: 'x', exp: nowSec() + 60 })), 'alg-not-allowed');
    const hs512 = await new SignJWT({ sub: 'x', exp: nowSec() + 60 }).setProtectedHeader({ alg: 'HS512' }).sign(secret);
    await expectAuthError(a.verify(hs512), 'alg-not-allowed');
    const ed = await makeKey('ed', 'EdDSA');
    await expectAuthError(a.verify(await sign(ed)), 'alg-not-allowed');
  });
});

describe('createUserAuth: construction', () => {
  it('needs exactly one of jwksUrl / devSecret, a usable URL and a long enough secret', () => {
    expect(() => createUserAuth({})).toThrow(/exactly one/);
    expect(() => createUserAuth({ jwksUrl: 'http://127.0.0.1:1/jwks', devSecret: new Uint8Array(32) })).toThrow(
      /exactly one/,
    );
    expect(() => createUserAuth({ jwksUrl: 'not a url' })).toThrow(/http\(s\) URL/);
    expect(() => createUserAuth({ jwksUrl: 'file:///etc/passwd' })).toThrow(/http\(s\) URL/);
    expect(() => createUserAuth({ devSecret: new Uint8Array(16) })).toThrow(/at least 32 bytes/);
  });
});

describe('bearerToken', () => {
  it('extracts the token', () => {
    expect(bearerToken('Bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(bearerToken('bearer abc.def-_.ghi')).toBe('abc.def-_.ghi');
  });

  it('says missing or malformed, without echoing the credential', () => {
    const code = (h: string | undefined): string => {
      try {
        bearerToken(h);
        return 'ok';
      } catch (e: unknown) {
        expect(e).toBeInstanceOf(AuthError);
        expect((e as AuthError).message).not.toContain('s3cr3t');
        return (e as AuthError).code;
      }
    };
    expect(code(undefined)).toBe('missing');
    expect(code('')).toBe('missing');
    expect(code('   ')).toBe('missing');
    expect(code('Bearer')).toBe('malformed');
    expect(code('Bearer ')).toBe('malformed');
    expect(code('Basic s3cr3t')).toBe('malformed');
    expect(code('eyJs3cr3t.x.y')).toBe('malformed');
    expect(code('Bearer a b')).toBe('malformed');
  });
});
