import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createConnection, type ConnectionDeps } from '../../web-client/src/lib/connection.js';
import { FakeWebSocket, authenticateFake } from './fakes.js';

function setup(overrides: Partial<ConnectionDeps> = {}) {
  const log: string[] = [];
  const conn = createConnection({
    url: 'ws://coord.test/v1/ws',
    deviceId: 'dev-1',
    getToken: async () => 'tok',
    WebSocket: FakeWebSocket,
    random: () => 1, // the full ceiling, so delays are predictable
    onFrame: (f) => log.push(`frame ${f.type}`),
    onConnected: (i) => log.push(`connected ${i.userId}`),
    onDisconnected: (i) => log.push(`disconnected ${i.code} ${i.willReconnect ? `retry ${i.reconnectInMs}` : 'final'}`),
    onError: (stage, e) => log.push(`error ${stage} ${e.message}`),
    ...overrides,
  });
  return { conn, log };
}

const authenticate = () => authenticateFake();

beforeEach(() => {
  vi.useFakeTimers();
  FakeWebSocket.instances = [];
});
afterEach(() => {
  vi.useRealTimers();
});

describe('connection', () => {
  it('sends the auth frame first and reports the authenticated user', async () => {
    const { conn, log } = setup();
    conn.start();
    const ws = await authenticate();
    expect(ws.url).toBe('ws://coord.test/v1/ws');
    expect(ws.sent[0]).toEqual({ type: 'auth', token: 'tok', deviceId: 'dev-1' });
    expect(log).toEqual(['connected u-1']);
    expect(conn.state()).toMatchObject({ status: 'open', userId: 'u-1', attempt: 0 });
    ws.receive({ type: 'mission-due', missionId: 'm', iterationId: '6a061268-1c1b-5d2e-a3f4-0123456789ab', dueAt: 'd' });
    expect(log.at(-1)).toBe('frame mission-due');
    conn.stop();
  });

  it('backs off exponentially while the server is away, and resets after a good auth', async () => {
    const { conn, log } = setup();
    conn.start();
    await vi.advanceTimersByTimeAsync(0);
    FakeWebSocket.last().serverClose(1006);
    expect(log.at(-1)).toBe('disconnected 1006 retry 500');
    await vi.advanceTimersByTimeAsync(500);
    FakeWebSocket.last().serverClose(1006);
    expect(log.at(-1)).toBe('disconnected 1006 retry 1000');
    await vi.advanceTimersByTimeAsync(1000);
    FakeWebSocket.last().serverClose(1006);
    expect(log.at(-1)).toBe('disconnected 1006 retry 2000');
    await vi.advanceTimersByTimeAsync(2000);
    const ws = FakeWebSocket.last();
    ws.open();
    ws.receive({ type: 'auth-ok', userId: 'u-1', deviceId: 'dev-1' });
    ws.serverClose(1001, 'server shutting down');
    expect(log.at(-1)).toBe('disconnected 1001 retry 500');
    expect(FakeWebSocket.instances).toHaveLength(4);
    conn.stop();
  });

  it('treats a missing pong as a dead socket', async () => {
    const { conn, log } = setup({ pingIntervalMs: 25_000, pongTimeoutMs: 10_000 });
    conn.start();
    const ws = await authenticate();
    await vi.advanceTimersByTimeAsync(25_000);
    expect(ws.sent.at(-1)).toEqual({ type: 'ping' });
    ws.receive({ type: 'pong' });
    await vi.advanceTimersByTimeAsync(25_000);
    expect(ws.closed).toBeNull();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(ws.closed).toEqual({ code: 4000, reason: 'no pong' });
    expect(log.at(-1)).toBe('disconnected 4000 retry 500');
    await vi.advanceTimersByTimeAsync(500);
    expect(FakeWebSocket.instances).toHaveLength(2);
    conn.stop();
  });

  it('gives up on a server that never answers the auth frame', async () => {
    const { conn } = setup({ authTimeoutMs: 3_000 });
    conn.start();
    await vi.advanceTimersByTimeAsync(0);
    const ws = FakeWebSocket.last();
    ws.open();
    await vi.advanceTimersByTimeAsync(3_000);
    expect(ws.closed?.code).toBe(4001);
    expect(conn.state().status).toBe('waiting');
    conn.stop();
  });

  it('pauses without reconnecting and resumes at once', async () => {
    const { conn, log } = setup();
    conn.start();
    const ws = await authenticate();
    conn.pause();
    expect(ws.closed).toEqual({ code: 1000, reason: 'tab hidden' });
    expect(log.at(-1)).toBe('disconnected 1000 final');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    conn.resume();
    await authenticate();
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(conn.state().status).toBe('open');
    conn.stop();
    expect(conn.state().status).toBe('stopped');
  });

  it('retries when the token cannot be had', async () => {
    let fail = true;
    const { conn, log } = setup({
      getToken: async () => {
        if (fail) throw new Error('expired');
        return 'tok2';
      },
    });
    conn.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(log).toEqual(['error connect getToken failed', 'disconnected 0 retry 500']);
    fail = false;
    await vi.advanceTimersByTimeAsync(500);
    expect(FakeWebSocket.last().url).toBe('ws://coord.test/v1/ws');
    conn.stop();
  });

  for (const code of [4400, 4401, 4429]) {
    it(`stops the loop on close code ${code} (retrying cannot help) with status refused`, async () => {
      const { conn, log } = setup();
      conn.start();
      const ws = await authenticate();
      ws.serverClose(code, 'refused');
      expect(conn.state().status).toBe('refused');
      expect(log.at(-1)).toBe(`disconnected ${code} final`);
      await vi.advanceTimersByTimeAsync(120_000);
      expect(FakeWebSocket.instances).toHaveLength(1);
      conn.stop();
    });
  }

  it('focus and online events leave a refusal only after the backoff, and never cut a backoff wait short', async () => {
    const { conn } = setup();
    conn.start();
    await vi.advanceTimersByTimeAsync(0);
    FakeWebSocket.last().serverClose(4401, 'token expired');
    // A storm of focus events: one reconnect, after the backoff (full ceiling: 500 ms).
    for (let i = 0; i < 10; i++) conn.resume();
    await vi.advanceTimersByTimeAsync(499);
    expect(FakeWebSocket.instances).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last().serverClose(4401, 'token expired');
    conn.resume();
    await vi.advanceTimersByTimeAsync(999);
    expect(FakeWebSocket.instances).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeWebSocket.instances).toHaveLength(3);
    // A network failure waits out its backoff whatever focus events come.
    FakeWebSocket.last().serverClose(1006);
    for (let i = 0; i < 10; i++) conn.resume();
    await vi.advanceTimersByTimeAsync(1_999);
    expect(FakeWebSocket.instances).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeWebSocket.instances).toHaveLength(4);
    conn.stop();
  });

  it('sends a fresh token before the current one expires, and again before the renewed one does', async () => {
    let n = 0;
    const { conn } = setup({ getToken: async () => `tok-${++n}`, reauthMarginMs: 60_000, pingIntervalMs: 1e9 });
    conn.start();
    await vi.advanceTimersByTimeAsync(0);
    const ws = FakeWebSocket.last();
    ws.open();
    ws.receive({ type: 'auth-ok', userId: 'u-1', deviceId: 'dev-1', expiresAt: '2000-01-01T00:00:00Z', expiresInMs: 900_000 });
    // The server's time left wins over an expiry this clock would misread.
    await vi.advanceTimersByTimeAsync(839_999);
    expect(ws.sent.filter((f) => (f as { type: string }).type === 'reauth')).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(ws.sent.at(-1)).toEqual({ type: 'reauth', token: 'tok-2' });
    ws.receive({ type: 'reauth-ok', expiresInMs: 900_000 });
    await vi.advanceTimersByTimeAsync(840_000);
    expect(ws.sent.at(-1)).toEqual({ type: 'reauth', token: 'tok-3' });
    expect(ws.closed).toBeNull();
    conn.stop();
  });

  it('closes the socket (4002) when no fresh token can be had, so the server stops choosing it; reconnects through the backoff', async () => {
    let fail = false;
    const { conn, log } = setup({
      pingIntervalMs: 1e9,
      getToken: async () => {
        if (fail) throw new Error('session gone');
        return 'tok';
      },
    });
    conn.start();
    await vi.advanceTimersByTimeAsync(0);
    const ws = FakeWebSocket.last();
    ws.open();
    ws.receive({ type: 'auth-ok', userId: 'u-1', deviceId: 'dev-1', expiresInMs: 120_000 });
    fail = true;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(ws.closed).toEqual({ code: 4002, reason: 'token not renewed' });
    expect(log).toContain('disconnected 4002 retry 500');
    await vi.advanceTimersByTimeAsync(500);
    // The reconnect cannot get a token either: no socket is opened.
    expect(FakeWebSocket.instances).toHaveLength(1);
    conn.stop();
  });

  it('closes the socket when the server refuses the fresh token', async () => {
    const { conn } = setup();
    conn.start();
    const ws = await authenticate();
    ws.receive({ type: 'error', code: 'reauth-failed', message: 'token signature does not verify' });
    expect(ws.closed).toEqual({ code: 4002, reason: 'token not renewed' });
    conn.stop();
  });

  it('drop() closes a socket this client cannot claim through', async () => {
    const { conn } = setup();
    conn.start();
    const ws = await authenticate();
    conn.drop('no token');
    expect(ws.closed).toEqual({ code: 4002, reason: 'no token' });
    expect(conn.state().status).toBe('waiting');
    conn.stop();
  });

  it('names its context in the auth frame', async () => {
    const { conn } = setup({ contextId: 'tab-1' });
    conn.start();
    const ws = await authenticate();
    expect(ws.sent[0]).toEqual({ type: 'auth', token: 'tok', deviceId: 'dev-1', contextId: 'tab-1' });
    conn.stop();
  });
});
