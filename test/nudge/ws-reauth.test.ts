/**
 * A socket lives as long as its token, against a real coordinator: auth-ok
 * says when the token expires; at that instant the socket is closed with
 * 4401 (and its presence row goes, so the router falls back to push), unless
 * the client sent a fresh token for the same user first (`reauth` →
 * `reauth-ok` with the new expiry). A token for another user closes it with
 * 4400; a token that does not verify is refused and the socket keeps its
 * old expiry.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/user-auth.js';
import { CLOSE_CODES } from '../../src/nudge/protocol.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { connectClient, createFallbackSpy, devSecretOf, sleep, startTestCoordinator, waitFor, type TestCoordinator, type WsClient } from '../support/coordinator.js';

let db: TestDb;
let c: TestCoordinator;
let devSecret: Uint8Array;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb();
  c = await startTestCoordinator(db.sql, {}, { fallback: createFallbackSpy() });
  devSecret = await devSecretOf(db.sql);
});

afterAll(async () => {
  await Promise.all(clients.map((cl) => cl.close()));
  await c.stop();
  await db.drop();
});

/** A dev token for `userId` expiring `ttlSec` seconds from now (to the second, as JWTs count). */
const shortToken = (userId: string, ttlSec: number) => signDevToken(devSecret, userId, ttlSec);
const expOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp * 1000;

async function connect(token: string, deviceId: string): Promise<WsClient> {
  const ws = await connectClient(c.wsUrl, { token, deviceId });
  clients.push(ws);
  return ws;
}

const presence = async (userId: string) =>
  (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.presence WHERE user_id = ${userId}`)[0]!.n;

describe('a socket and its token', () => {
  it('auth-ok says when the token expires, by the clock and as time left', async () => {
    const token = await shortToken('exp-frame', 600);
    const ws = await connect(token, 'd1');
    const ok = ws.frames[0] as { type: string; expiresAt?: string; expiresInMs?: number };
    expect(ok).toMatchObject({ type: 'auth-ok', userId: 'exp-frame', deviceId: 'd1' });
    expect(Date.parse(ok.expiresAt!)).toBe(expOf(token));
    expect(ok.expiresInMs).toBeGreaterThan(598_000);
    expect(ok.expiresInMs).toBeLessThanOrEqual(600_000);
  });

  it(`is closed with ${CLOSE_CODES.authFailed} when its token expires, and its presence goes with it`, async () => {
    const token = await shortToken('exp-close', 2);
    const ws = await connect(token, 'd1');
    await waitFor(async () => (await presence('exp-close')) === 1, 2000, 'the presence row');
    const closed = await ws.closed;
    const at = Date.now();
    expect(closed).toEqual({ code: CLOSE_CODES.authFailed, reason: 'token expired' });
    expect(at).toBeGreaterThanOrEqual(expOf(token) - 50);
    expect(at).toBeLessThan(expOf(token) + 1000);
    expect(ws.frames).toContainEqual(expect.objectContaining({ type: 'error', code: 'token-expired' }));
    await waitFor(async () => (await presence('exp-close')) === 0, 2000, 'the presence row to go');
  });

  it('a reauth with a fresh token for the same user keeps it open past the first expiry', async () => {
    const first = await shortToken('exp-renew', 2);
    const ws = await connect(first, 'd1');
    const fresh = await shortToken('exp-renew', 600);
    ws.send({ type: 'reauth', token: fresh });
    const ok = await ws.next('reauth-ok');
    expect(Date.parse(ok.expiresAt!)).toBe(expOf(fresh));
    expect((ok as { expiresInMs?: number }).expiresInMs).toBeGreaterThan(590_000);
    await sleep(Math.max(0, expOf(first) - Date.now()) + 500);
    expect(ws.ws.readyState).toBe(ws.ws.OPEN);
    ws.send({ type: 'ping' });
    await ws.next('pong');
  });

  it(`a reauth for another user closes the socket with ${CLOSE_CODES.protocolError}`, async () => {
    const ws = await connect(await shortToken('exp-alice', 600), 'd1');
    ws.send({ type: 'reauth', token: await shortToken('exp-mallory', 600) });
    expect(await ws.closed).toEqual({ code: CLOSE_CODES.protocolError, reason: 'reauth for another user' });
    expect(ws.frames).toContainEqual(expect.objectContaining({ type: 'error', code: 'reauth-other-user' }));
  });

  it('a reauth whose token does not verify is refused; the socket still closes at its first expiry', async () => {
    const token = await shortToken('exp-bad', 2);
    const ws = await connect(token, 'd1');
    ws.send({ type: 'reauth', token: await signDevToken(randomBytes(32), 'exp-bad', 600) });
    const err = await ws.next('error', (f) => f.code === 'reauth-failed');
    expect(err.message).toMatch(/signature/);
    expect(ws.ws.readyState).toBe(ws.ws.OPEN);
    expect((await ws.closed).code).toBe(CLOSE_CODES.authFailed);
    expect(Date.now()).toBeGreaterThanOrEqual(expOf(token) - 50);
  });
});
