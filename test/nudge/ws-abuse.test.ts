/**
 * A hostile but authenticated user against the WebSocket hub, over real
 * sockets and a real Postgres: the per-user and per-instance socket caps
 * refuse the newest with a code naming the cap (counted in a metric), and
 * a socket has exactly one identity: a second auth frame closes it (4400)
 * and leaves no presence behind for either user.
 */
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES } from '../../src/nudge/protocol.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { createFallbackSpy, openSocket, sleep, startTestCoordinator, waitFor, type TestCoordinator, type WsClient } from '../support/coordinator.js';

let db: TestDb;
let c: TestCoordinator;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb();
  c = await startTestCoordinator(db.sql, { WS_MAX_SOCKETS_PER_USER: '16', WS_MAX_SOCKETS: '100' }, { fallback: createFallbackSpy() });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((cl) => cl.close()));
  await waitFor(async () => (c.hub.connections() === 0 ? true : undefined), 5000, 'every socket closed');
});

afterAll(async () => {
  await c.stop();
  await db.drop();
});

async function capRefusals(cap: string): Promise<number> {
  const data = await c.metrics.capRefused.get();
  return data.values.filter((v) => v.labels.cap === cap).reduce((n, v) => n + v.value, 0);
}

async function presentUsers(userIds: string[]): Promise<string[]> {
  const rows = await db.sql<{ userId: string }[]>`SELECT DISTINCT user_id AS "userId" FROM mana_ai.presence WHERE user_id = ANY(${userIds}::text[])`;
  return rows.map((r) => r.userId).sort();
}

describe('socket caps', () => {
  it('60 sockets of one user: 16 authenticate, 44 are refused with 4429 naming the cap; another user still connects', async () => {
    const token = await c.token('greedy');
    const before = await capRefusals('ws_per_user');
    const socks = await Promise.all(Array.from({ length: 60 }, () => openSocket(c.wsUrl)));
    clients.push(...socks);
    socks.forEach((s, i) => s.send({ type: 'auth', token, deviceId: `d${i}` }));
    const outcomes = await Promise.all(
      socks.map((s) => Promise.race([s.next('auth-ok', undefined, 10_000).then(() => 'ok' as const), s.closed])),
    );
    const refused = outcomes.filter((o) => o !== 'ok');
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(16);
    expect(refused).toHaveLength(44);
    for (const r of refused) expect(r).toEqual({ code: CLOSE_CODES.tooManySockets, reason: 'socket limit per user (16) reached' });
    expect(await capRefusals('ws_per_user')).toBe(before + 44);
    const errors = socks.flatMap((s) => s.frames).filter((f) => f.type === 'error');
    expect(errors).toHaveLength(44);
    expect(errors[0]).toMatchObject({ code: 'too-many-sockets' });

    // The cap is per user: somebody else is not affected.
    const other = await openSocket(c.wsUrl);
    clients.push(other);
    other.send({ type: 'auth', token: await c.token('modest'), deviceId: 'd1' });
    await other.next('auth-ok');
    // Once the user closes sockets, new ones are admitted again.
    const open = socks.filter((_, i) => outcomes[i] === 'ok');
    await open[0]!.close();
    await waitFor(async () => (c.hub.connections() === 16 ? true : undefined), 5000, 'the closed socket to leave');
    const again = await openSocket(c.wsUrl);
    clients.push(again);
    again.send({ type: 'auth', token, deviceId: 'again' });
    await again.next('auth-ok');
  }, 30_000);

  it('past WS_MAX_SOCKETS the upgrade is answered 503 naming the cap, before any socket is made', async () => {
    const small = await startTestCoordinator(db.sql, { WS_MAX_SOCKETS: '3' }, { fallback: createFallbackSpy() });
    try {
      const socks = await Promise.all([0, 1, 2].map(() => openSocket(small.wsUrl)));
      const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const ws = new WebSocket(small.wsUrl);
        ws.on('open', () => reject(new Error('a fourth socket was accepted')));
        ws.on('error', () => undefined);
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
      });
      expect(refused.status).toBe(503);
      expect(refused.body).toContain('WS_MAX_SOCKETS');
      const data = await small.metrics.capRefused.get();
      expect(data.values.find((v) => v.labels.cap === 'ws_total')?.value).toBe(1);
      await Promise.all(socks.map((s) => s.close()));
    } finally {
      await small.stop();
    }
  });
});

describe('one socket, one identity', () => {
  it('a second auth frame closes the socket with 4400; the first identity is kept until then', async () => {
    const sock = await openSocket(c.wsUrl);
    clients.push(sock);
    sock.send({ type: 'auth', token: await c.token('first'), deviceId: 'd1' });
    sock.send({ type: 'auth', token: await c.token('second'), deviceId: 'd1' });
    expect(await sock.closed).toEqual({ code: CLOSE_CODES.protocolError, reason: 'second auth frame' });
    expect(sock.frames.map((f) => f.type)).toEqual(['auth-ok', 'error']);
    expect(sock.frames[0]).toMatchObject({ userId: 'first' });
    expect(sock.frames[1]).toMatchObject({ code: 'already-authenticated' });
  });

  it('two auth frames back to back for two users, then close: neither user is present afterwards (20 rounds)', async () => {
    const users = Array.from({ length: 40 }, (_, i) => `pair-${i}`);
    const tokens = await Promise.all(users.map((u) => c.token(u)));
    for (let round = 0; round < 20; round++) {
      const sock = await openSocket(c.wsUrl);
      // Both frames leave before the first verification can finish; the close follows at once.
      sock.ws.send(JSON.stringify({ type: 'auth', token: tokens[2 * round], deviceId: 'd1' }));
      sock.ws.send(JSON.stringify({ type: 'auth', token: tokens[2 * round + 1], deviceId: 'd1' }));
      // Alternate between closing at once and closing after the server answered.
      if (round % 2 === 1) await sock.next('auth-ok').catch(() => undefined);
      await sock.close();
    }
    await waitFor(async () => (c.hub.connections() === 0 ? true : undefined), 5000, 'every socket closed');
    // Give any presence write still in flight time to land (it would land after its removal if unordered).
    await sleep(500);
    expect(await presentUsers(users)).toEqual([]);
    expect(users.some((u) => c.hub.hasLocal(u))).toBe(false);
  }, 30_000);
});
