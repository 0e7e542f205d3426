/**
 * JWT edge cases through the real HTTP routes and the real socket of a
 * coordinator configured as in production: JWKS_URL pointing at a local
 * mana-auth stand-in that publishes one Ed25519 key, JWT_ISSUER and
 * JWT_AUDIENCE set (no dev tokens, no dev routes).
 *
 * Every refused token is a 401 with the stable code on HTTP, an
 * `auth-failed` error frame and close 4401 on the socket, never an auth-ok,
 * and is counted in mana_ai_auth_refused_total{transport, code}.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base64url, exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';
import { createTestDb, type TestDb } from '../support/db.js';
import { openSocket, type WsClient } from '../support/coordinator.js';
import { CLOSE_CODES } from '../../src/nudge/protocol.js';
import { startCaptured, type CapturedCoordinator } from '../faults/support.js';

const ISSUER = 'https://auth.mana.test';
const AUDIENCE = 'mana-ai';

let db: TestDb;
let c: CapturedCoordinator;
let jwks: Server;
let jwksRequests = 0;
let signing: { privateKey: CryptoKey; publicKey: CryptoKey; jwk: JWK };
let stranger: { privateKey: CryptoKey };
let rsa: { privateKey: CryptoKey };
const clients: WsClient[] = [];

beforeAll(async () => {
  const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  signing = { ...pair, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' } };
  stranger = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  rsa = await generateKeyPair('RS256');
  jwks = createServer((_req, res) => {
    jwksRequests += 1;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [signing.jwk] }));
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  const { port } = jwks.address() as AddressInfo;
  db = await createTestDb();
  c = await startCaptured(db.sql, {
    JWKS_URL: `http://127.0.0.1:${port}/api/auth/jwks`,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    WS_AUTH_TIMEOUT_MS: '2000',
    RATE_LIMIT_PER_MINUTE: '10000',
  });
});

afterAll(async () => {
  await Promise.all(clients.map((cl) => cl.close()));
  await c?.stop();
  jwks?.closeAllConnections();
  await new Promise<void>((resolve) => (jwks ? jwks.close(() => resolve()) : resolve()));
  await db?.drop();
});

const now = () => Math.floor(Date.now() / 1000);
const b64 = (o: unknown) => base64url.encode(JSON.stringify(o));

async function sign(claims: JWTPayload = {}, opts: { key?: CryptoKey | Uint8Array; alg?: string; kid?: string | null } = {}): Promise<string> {
  const kid = opts.kid === null ? undefined : (opts.kid ?? 'k1');
  return new SignJWT({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 600, ...claims })
    .setProtectedHeader({ alg: opts.alg ?? 'EdDSA', typ: 'JWT', ...(kid === undefined ? {} : { kid }) })
    .sign(opts.key ?? signing.privateKey);
}

/** HS256 over header.payload with a secret, by hand (jose refuses some of these secrets). */
async function hs256(secret: Uint8Array, claims: JWTPayload = {}): Promise<string> {
  const head = `${b64({ alg: 'HS256', typ: 'JWT', kid: 'k1' })}.${b64({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 600, ...claims })}`;
  const key = await crypto.subtle.importKey('raw', new Uint8Array(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const sig = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(head)));
  return `${head}.${base64url.encode(sig)}`;
}

const CASES: [name: string, code: string, make: () => Promise<string>][] = [
  ['expired', 'expired', () => sign({ iat: now() - 7200, exp: now() - 3600 })],
  ['not yet valid', 'not-yet-valid', () => sign({ nbf: now() + 3600 })],
  ['wrong issuer', 'wrong-issuer', () => sign({ iss: 'https://evil.example' })],
  ['no issuer', 'wrong-issuer', () => sign({ iss: undefined })],
  ['wrong audience', 'wrong-audience', () => sign({ aud: 'another-service' })],
  ['unknown kid', 'unknown-key', () => sign({}, { key: stranger.privateKey, kid: 'k-rotated-in' })],
  ['known kid, signed by another key', 'bad-signature', () => sign({}, { key: stranger.privateKey })],
  [
    'payload edited after signing',
    'bad-signature',
    async () => {
      const [h, , s] = (await sign()).split('.');
      return `${h}.${b64({ sub: 'bob', iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 600 })}.${s}`;
    },
  ],
  ['alg none', 'alg-not-allowed', async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now() + 600 })}.`],
  ['alg "None" with a signature', 'alg-not-allowed', async () => `${b64({ alg: 'None', kid: 'k1' })}.${b64({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now() + 600 })}.AAAA`],
  ['HS256 keyed with the public key bytes', 'alg-not-allowed', () => hs256(base64url.decode(signing.jwk.x!))],
  ['HS256 keyed with the public JWK as JSON', 'alg-not-allowed', () => hs256(new TextEncoder().encode(JSON.stringify(signing.jwk)))],
  ['HS256 keyed with the public key PEM', 'alg-not-allowed', async () => hs256(new TextEncoder().encode(await exportSPKI(signing.publicKey)))],
  ['RS256 naming the Ed25519 kid', 'alg-not-allowed', () => sign({}, { key: rsa.privateKey, alg: 'RS256' })],
  ['no exp', 'malformed', () => sign({ exp: undefined })],
  ['no sub', 'no-subject', () => sign({ sub: undefined })],
  ['empty sub', 'no-subject', () => sign({ sub: '' })],
  ['not a JWT', 'malformed', async () => 'definitely-not-a-jwt'],
  ['four parts', 'malformed', async () => `${await sign()}.extra`],
];

async function httpStatus(token: string): Promise<{ status: number; code?: string; wwwAuth: string | null }> {
  const res = await fetch(`${c.url}/v1/occurrences`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: body.error?.code, wwwAuth: res.headers.get('www-authenticate') };
}

describe('JWT edge cases against a JWKS-configured coordinator', () => {
  it('a valid EdDSA token from the JWKS is accepted on HTTP and on the socket (control)', async () => {
    const token = await sign();
    expect(await httpStatus(token)).toMatchObject({ status: 200 });
    const sock = await openSocket(c.wsUrl);
    clients.push(sock);
    sock.send({ type: 'auth', token, deviceId: 'd1' });
    expect(await sock.next('auth-ok')).toEqual({ type: 'auth-ok', userId: 'alice', deviceId: 'd1', expiresAt: expect.stringMatching(/Z$/), expiresInMs: expect.any(Number) });
    // The dev conveniences are off in this mode.
    expect((await fetch(`${c.url}/dev/token`, { method: 'POST', body: '{"userId":"x"}', headers: { 'content-type': 'application/json' } })).status).toBe(404);
  });

  for (const [name, code, make] of CASES) {
    it(`${name}: 401 ${code} on HTTP, close ${CLOSE_CODES.authFailed} on the socket`, async () => {
      const token = await make();
      const before = await c.scrape();
      const http = await httpStatus(token);
      expect(http).toEqual({ status: 401, code, wwwAuth: 'Bearer' });

      const sock = await openSocket(c.wsUrl);
      clients.push(sock);
      sock.send({ type: 'auth', token, deviceId: 'd1' });
      const closed = await sock.closed;
      expect(closed.code).toBe(CLOSE_CODES.authFailed);
      expect(sock.frames.some((f) => f.type === 'auth-ok')).toBe(false);
      expect(sock.frames).toEqual([expect.objectContaining({ type: 'error', code: 'auth-failed' })]);

      const after = await c.scrape();
      expect(after.value('mana_ai_auth_refused_total', { transport: 'http', code }) - before.value('mana_ai_auth_refused_total', { transport: 'http', code })).toBe(1);
      expect(after.value('mana_ai_auth_refused_total', { transport: 'ws', code }) - before.value('mana_ai_auth_refused_total', { transport: 'ws', code })).toBe(1);
    });
  }

  it('a stream of unknown kids does not hammer mana-auth (one refetch per cooldown)', async () => {
    const before = jwksRequests;
    for (let i = 0; i < 20; i++) expect((await httpStatus(await sign({}, { key: stranger.privateKey, kid: `k-${i}` }))).status).toBe(401);
    expect(jwksRequests - before).toBeLessThanOrEqual(1);
  });

  it('missing and malformed Authorization headers are 401 and counted', async () => {
    const before = (await c.scrape()).value('mana_ai_auth_refused_total', { transport: 'http' });
    for (const header of [undefined, '', 'Bearer', 'Basic YWxpY2U6cHc=', `Token ${await sign()}`, `Bearer ${await sign()} extra`]) {
      const res = await fetch(`${c.url}/v1/occurrences`, { headers: header === undefined ? {} : { authorization: header } });
      expect(res.status, String(header).slice(0, 20)).toBe(401);
      await res.arrayBuffer();
    }
    expect((await c.scrape()).value('mana_ai_auth_refused_total', { transport: 'http' }) - before).toBe(6);
  });
});
