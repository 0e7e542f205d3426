/**
 * The socket at /v1/ws and the user boundary, against a real coordinator:
 * who may connect (forged, expired, alg:none tokens refused on the socket
 * and over HTTP), who receives which nudges, who may claim what, and how the
 * hub answers bad input (error frames, close codes) without falling over.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/user-auth.js';
import { CLOSE_CODES, MAX_FRAME_BYTES } from '../../src/nudge/protocol.js';
import { createTestDb, type TestDb } from '../support/db.js';
import {
  connectClient,
  createFallbackSpy,
  devSecretOf,
  inMs,
  insertMissions,
  occurrencesOf,
  openSocket,
  sleep,
  startTestCoordinator,
  type TestCoordinator,
  type WsClient,
} from '../support/coordinator.js';

let db: TestDb;
let c: TestCoordinator;
let devSecret: Uint8Array;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb();
  c = await startTestCoordinator(db.sql, { WS_AUTH_TIMEOUT_MS: '300' }, { fallback: createFallbackSpy() });
  devSecret = await devSecretOf(db.sql);
});

afterAll(async () => {
  await Promise.all(clients.map((cl) => cl.close()));
  await c.stop();
  await db.drop();
});

async function connect(userId: string, deviceId: string): Promise<WsClient> {
  const client = await connectClient(c.wsUrl, { token: await c.token(userId), deviceId });
  clients.push(client);
  return client;
}

async function post(path: string, token: string | undefined, body: unknown) {
  const res = await fetch(`${c.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

const BAD_TOKENS: [name: string, make: () => Promise<string>][] = [
  ['forged (signed with another secret)', () => signDevToken(randomBytes(32), 'victim')],
  ['expired', () => signDevToken(devSecret, 'victim', 3600, { now: () => Date.now() - 3 * 3600_000 })],
  [
    'alg none',
    async () => {
      const now = Math.floor(Date.now() / 1000);
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'victim', iat: now, exp: now + 3600 })}.`;
    },
  ],
  [
    'HS256 header with the signature stripped',
    async () => {
      const [h, p] = (await signDevToken(devSecret, 'victim')).split('.');
      return `${h}.${p}.`;
    },
  ],
  ['not a JWT', async () => 'hello'],
];

describe('tokens', () => {
  for (const [name, make] of BAD_TOKENS) {
    it(`${name}: refused on HTTP with 401 and on the socket with ${CLOSE_CODES.authFailed}`, async () => {
      const token = await make();
      const http = await post(`/v1/occurrences/${crypto.randomUUID()}/claim`, token, { deviceId: 'd1' });
      expect(http.status).toBe(401);

      const sock = await openSocket(c.wsUrl);
      clients.push(sock);
      sock.send({ type: 'auth', token, deviceId: 'd1' });
      const closed = await sock.closed;
      expect(closed.code).toBe(CLOSE_CODES.authFailed);
      expect(sock.frames.some((f) => f.type === 'auth-ok')).toBe(false);
      expect(sock.frames).toContainEqual(expect.objectContaining({ type: 'error', code: 'auth-failed' }));
    });
  }

  it('a request without a token is refused with 401', async () => {
    expect((await post(`/v1/occurrences/${crypto.randomUUID()}/claim`, undefined, { deviceId: 'd1' })).status).toBe(401);
  });

  it('the dev token is accepted (control)', async () => {
    const ws = await connect('control', 'd1');
    expect(ws.frames[0]).toEqual({ type: 'auth-ok', userId: 'control', deviceId: 'd1', expiresAt: expect.stringMatching(/Z$/), expiresInMs: expect.any(Number) });
  });
});

describe('the socket handshake and frames', () => {
  it(`closes a socket that sends no auth frame in time with ${CLOSE_CODES.authTimeout}`, async () => {
    const sock = await openSocket(c.wsUrl);
    clients.push(sock);
    const opened = Date.now();
    const closed = await sock.closed;
    expect(closed.code).toBe(CLOSE_CODES.authTimeout);
    expect(Date.now() - opened).toBeGreaterThanOrEqual(250);
  });

  it('closes a socket whose first frame is not auth', async () => {
    const sock = await openSocket(c.wsUrl);
    clients.push(sock);
    sock.send({ type: 'ping' });
    expect((await sock.closed).code).toBe(CLOSE_CODES.authFailed);
  });

  it('answers invalid frames with an error frame and keeps the socket open', async () => {
    const ws = await connect('frames', 'd1');
    ws.send('not json');
    ws.send({ type: 'nope' });
    ws.send({ type: 'claim', iterationId: 'not-a-uuid' });
    ws.send([1, 2, 3]);
    ws.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    ws.send({ type: 'ping' });
    await ws.next('pong');
    const codes = ws.frames.filter((f) => f.type === 'error').map((f) => (f as { code: string }).code);
    // A second auth frame is not among these: it closes the socket (test/nudge/ws-abuse.test.ts).
    expect(codes).toEqual(['invalid-json', 'invalid-frame', 'invalid-frame', 'invalid-frame', 'binary-frame']);
    expect(ws.ws.readyState).toBe(ws.ws.OPEN);

    // A well-formed claim for an occurrence that does not exist is an answer, not an error.
    const id = crypto.randomUUID();
    ws.send({ type: 'claim', iterationId: id });
    expect(await ws.next('claim-result')).toEqual({ type: 'claim-result', iterationId: id, granted: false, reason: 'not-found' });
  });

  it('closes a socket that keeps sending invalid frames', async () => {
    const ws = await connect('spammer', 'd1');
    for (let i = 0; i < 25; i++) ws.send({ type: 'nope' });
    expect((await ws.closed).code).toBe(CLOSE_CODES.protocolError);
  });

  it(`closes with ${CLOSE_CODES.tooBig} on a frame over ${MAX_FRAME_BYTES} bytes`, async () => {
    const ws = await connect('big', 'd1');
    ws.send({ type: 'ping', pad: 'x'.repeat(MAX_FRAME_BYTES) });
    expect((await ws.closed).code).toBe(CLOSE_CODES.tooBig);
    // The hub is still serving others.
    const other = await connect('big', 'd2');
    other.send({ type: 'ping' });
    await other.next('pong');
  });
});

describe('one user, one user’s nudges', () => {
  it("user A neither receives B's nudges nor can claim, complete or release B's occurrence", async () => {
    const alice = await connect('alice', 'phone');
    // Same device id as Bob's: device ids are not an identity.
    const aliceSameDevice = await connect('alice', 'bob-laptop');
    const bob = await connect('bob', 'bob-laptop');
    await insertMissions(db.sql, [{ userId: 'bob', missionId: 'secret', nextRunAt: inMs(150) }]);
    const nudge = await bob.next('mission-due');
    await sleep(300);
    expect(alice.nudges()).toHaveLength(0);
    expect(aliceSameDevice.nudges()).toHaveLength(0);

    const aliceToken = await c.token('alice');
    for (const action of ['claim', 'complete', 'release']) {
      const res = await post(`/v1/occurrences/${nudge.iterationId}/${action}`, aliceToken, { deviceId: 'bob-laptop' });
      expect(res.status, action).toBe(403);
      expect(res.body.error?.code).toBe('forbidden');
    }
    alice.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await alice.next('claim-result')).toMatchObject({ granted: false, reason: 'forbidden' });

    // Alice's own listing does not show it; Bob's occurrence is untouched and still his to claim.
    const list = await fetch(`${c.url}/v1/occurrences`, { headers: { authorization: `Bearer ${aliceToken}` } });
    expect(await list.json()).toEqual([]);
    expect(await occurrencesOf(db.sql, 'bob')).toEqual([expect.objectContaining({ status: 'nudged', claimedBy: null })]);
    bob.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await bob.next('claim-result')).toMatchObject({ granted: true });
  });
});

describe('connection accounting', () => {
  it('the connections gauge follows authentications and closes', async () => {
    const own = await startTestCoordinator(db.sql, { INSTANCE_ID: 'gauge' }, { fallback: createFallbackSpy() });
    const gauge = async () => {
      const text = await (await fetch(`${own.url}/metrics`)).text();
      return Number(/^mana_ai_ws_connections (\d+)$/m.exec(text)?.[1]);
    };
    try {
      const socks = await Promise.all(['a', 'b', 'c'].map(async (d) => connectClient(own.wsUrl, { token: await own.token(d === 'c' ? 'x' : 'y'), deviceId: d })));
      const unauthed = await openSocket(own.wsUrl);
      expect(await gauge()).toBe(3);
      await socks[0]!.close();
      await sleep(100);
      expect(await gauge()).toBe(2);
      await Promise.all([...socks.slice(1), unauthed].map((s) => s.close()));
      await sleep(100);
      expect(await gauge()).toBe(0);
    } finally {
      await own.stop();
    }
  });
});
