/**
 * Hostile clients on the WebSocket and on the raw HTTP port, against a real
 * coordinator:
 *
 * - random frames (text, JSON, binary, wrong shapes, bad UTF-8, reserved
 *   opcodes) before and after authentication: every answer is a valid
 *   server frame (an error frame where the input was wrong), or the socket
 *   is closed with one of the protocol's codes — the hub never crashes and
 *   keeps serving others;
 * - frames over 16 KiB are refused with 1009, before and after auth;
 * - sockets that never authenticate are closed with 4408 after the auth
 *   timeout, even when they keep the connection busy with pings;
 * - raw TCP clients that send nothing, half a request line, half the
 *   headers, or half a body are cut off by the server's header and request
 *   timeouts, while an authenticated socket outlives those timeouts.
 *
 * Each class is counted in /metrics.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import WebSocket from 'ws';
import { createTestDb, type TestDb } from '../support/db.js';
import { connectClient, openSocket, sleep, type WsClient } from '../support/coordinator.js';
import { CLOSE_CODES, MAX_FRAME_BYTES, ServerFrame } from '../../src/nudge/protocol.js';
import { startCaptured, type CapturedCoordinator } from '../faults/support.js';

const AUTH_TIMEOUT_MS = 400;
const HEADERS_TIMEOUT_MS = 500;
const REQUEST_TIMEOUT_MS = 1000;

let db: TestDb;
let c: CapturedCoordinator;
let token: string;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb();
  c = await startCaptured(db.sql, {
    WS_AUTH_TIMEOUT_MS: String(AUTH_TIMEOUT_MS),
    HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
    HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    TICK_INTERVAL_MS: '1000',
  });
  token = await c.token('frames');
});

afterAll(async () => {
  await Promise.all(clients.map((cl) => cl.close()));
  await c?.stop();
  await db?.drop();
});

/** The close codes the hub (or ws underneath it) may end a hostile socket with. */
const ALLOWED_CLOSES = [CLOSE_CODES.authTimeout, CLOSE_CODES.authFailed, CLOSE_CODES.protocolError, CLOSE_CODES.tooBig, 1002, 1007];

type Frame = { text: string } | { binary: Buffer } | { badUtf8: Buffer };

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3, stringUnit: 'grapheme' }).map((v) => ({ text: JSON.stringify(v) ?? 'null' })) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 300 }).map((text) => ({ text })) },
  {
    weight: 3,
    arbitrary: fc
      .record(
        {
          type: fc.oneof(fc.constantFrom('auth', 'claim', 'ping', 'pong', 'AUTH', '', 'mission-due', 'claim-result', 'error'), fc.string()),
          token: fc.oneof(fc.string(), fc.constant('a.b.c'), fc.constant('x'.repeat(9000))),
          deviceId: fc.oneof(fc.string(), fc.constant('d1'), fc.constant('../../etc')),
          iterationId: fc.oneof(fc.uuid(), fc.string(), fc.integer()),
          extra: fc.anything(),
        },
        { requiredKeys: ['type'] },
      )
      .map((v) => ({ text: JSON.stringify(v) })),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => ({ binary: Buffer.from(b) })) },
  { weight: 1, arbitrary: fc.constantFrom(Buffer.from([0xff, 0xfe, 0xfd]), Buffer.from([0xc3, 0x28]), Buffer.from('{"type":"ping"\xed\xa0\x80}', 'latin1')).map((b) => ({ badUtf8: b })) },
);

function sendFrame(ws: WebSocket, f: Frame): void {
  if ('text' in f) ws.send(f.text);
  else if ('binary' in f) ws.send(f.binary, { binary: true });
  else ws.send(f.badUtf8, { binary: false });
}

/** Resolves with the close code, or null when the socket is still open after answering a ping. */
async function settle(client: WsClient, authenticated: boolean): Promise<number | null> {
  const raced = await Promise.race([client.closed.then((c2) => c2.code), sleep(200).then(() => undefined)]);
  if (raced !== undefined) return raced;
  if (!authenticated) {
    // Unauthenticated and still open: the auth timeout must end it.
    return (await client.closed).code;
  }
  client.send({ type: 'ping' });
  const r = await Promise.race([client.next('pong', undefined, 3000).then(() => null), client.closed.then((c2) => c2.code)]);
  return r;
}

describe('random frames', () => {
  it('before and after auth: only valid server frames come back, or a close with a protocol code', async () => {
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(frameArb, { minLength: 1, maxLength: 8 }), async (auth, frames) => {
        const client = auth ? await connectClient(c.wsUrl, { token, deviceId: 'fuzz' }) : await openSocket(c.wsUrl);
        clients.push(client);
        for (const f of frames) {
          if (client.ws.readyState !== WebSocket.OPEN) break;
          sendFrame(client.ws, f);
        }
        const code = await settle(client, auth);
        const key = code === null ? 'open' : String(code);
        codes.set(key, (codes.get(key) ?? 0) + 1);
        // An unauthenticated socket always ends closed; an authenticated one may stay open (having answered a ping).
        expect(auth ? [...ALLOWED_CLOSES, 'open'] : ALLOWED_CLOSES, JSON.stringify(frames).slice(0, 300)).toContain(code ?? 'open');
        for (const frame of client.frames) expect(ServerFrame.safeParse(frame).success, JSON.stringify(frame)).toBe(true);
        // Wrong input is answered, not ignored: an error frame or a close.
        await client.close();
      }),
      { numRuns: 100, skipAllAfterTimeLimit: 30_000 },
    );
    // The hub still serves a well-behaved client.
    const ok = await connectClient(c.wsUrl, { token, deviceId: 'after-fuzz' });
    clients.push(ok);
    ok.send({ type: 'ping' });
    await ok.next('pong');
    expect([...codes.keys()].length).toBeGreaterThan(1);
    const m = await c.scrape();
    expect(m.value('mana_ai_ws_frames_total', { outcome: 'invalid' })).toBeGreaterThan(0);
    expect(m.value('mana_ai_auth_refused_total', { transport: 'ws' })).toBeGreaterThan(0);
    expect(c.records().filter((r) => r['msg'] === 'frame handling failed')).toEqual([]);
  }, 60_000);

  it(`frames over ${MAX_FRAME_BYTES} bytes are refused with ${CLOSE_CODES.tooBig}, before and after auth`, async () => {
    const before = (await c.scrape()).value('mana_ai_ws_closed_total', { reason: 'frame too big' });
    const unauth = await openSocket(c.wsUrl);
    unauth.send({ type: 'auth', token: 'x'.repeat(MAX_FRAME_BYTES + 1), deviceId: 'd1' });
    expect((await unauth.closed).code).toBe(CLOSE_CODES.tooBig);

    const authed = await connectClient(c.wsUrl, { token, deviceId: 'big' });
    authed.ws.send(randomBytes(MAX_FRAME_BYTES + 1), { binary: true });
    expect((await authed.closed).code).toBe(CLOSE_CODES.tooBig);

    // Exactly at the limit is still a frame (unknown keys are ignored: a pong).
    const edge = await connectClient(c.wsUrl, { token, deviceId: 'edge' });
    clients.push(edge);
    const pad = MAX_FRAME_BYTES - JSON.stringify({ type: 'ping', pad: '' }).length;
    edge.send({ type: 'ping', pad: 'x'.repeat(pad) });
    expect(Buffer.byteLength(JSON.stringify({ type: 'ping', pad: 'x'.repeat(pad) }))).toBe(MAX_FRAME_BYTES);
    await edge.next('pong');
    expect(edge.ws.readyState).toBe(WebSocket.OPEN);

    const m = await c.scrape();
    expect(m.value('mana_ai_ws_closed_total', { reason: 'frame too big' }) - before).toBe(2);
    expect(m.value('mana_ai_ws_frames_total', { outcome: 'too_big' })).toBeGreaterThanOrEqual(2);
  });

  it('raw protocol violations (reserved opcode, unmasked frame) close the socket; the hub stays up', async () => {
    for (const frame of [Buffer.from([0x83, 0x80, 1, 2, 3, 4]) /* reserved opcode 3, masked, empty */, Buffer.from([0x81, 0x02, 0x68, 0x69]) /* unmasked text */]) {
      const sock = await rawUpgrade();
      sock.write(frame);
      const closeFrame = await readUntilClosed(sock);
      // A close frame (opcode 8) with 1002, then the TCP connection ends.
      expect(closeFrame[0]).toBe(0x88);
      expect(closeFrame.readUInt16BE(2)).toBe(1002);
    }
    const ok = await connectClient(c.wsUrl, { token, deviceId: 'after-raw' });
    clients.push(ok);
    ok.send({ type: 'ping' });
    await ok.next('pong');
    expect((await c.scrape()).value('mana_ai_ws_closed_total', { reason: 'protocol violation' })).toBeGreaterThanOrEqual(2);
  });
});

describe('slow clients', () => {
  it(`sockets that never authenticate are closed with ${CLOSE_CODES.authTimeout}, even while they ping`, async () => {
    const before = (await c.scrape()).value('mana_ai_ws_closed_total', { reason: 'no auth frame in time' });
    const started = Date.now();
    const loris = await Promise.all(Array.from({ length: 20 }, () => openSocket(c.wsUrl)));
    // Half of them keep the connection busy with protocol pings.
    const timers = loris.slice(0, 10).map((l) => setInterval(() => l.ws.readyState === WebSocket.OPEN && l.ws.ping(), 50));
    const closed = await Promise.all(loris.map((l) => l.closed));
    for (const t of timers) clearInterval(t);
    expect(closed.map((x) => x.code)).toEqual(Array(20).fill(CLOSE_CODES.authTimeout));
    expect(Date.now() - started).toBeGreaterThanOrEqual(AUTH_TIMEOUT_MS - 50);
    expect(Date.now() - started).toBeLessThan(AUTH_TIMEOUT_MS + 2000);
    expect((await c.scrape()).value('mana_ai_ws_closed_total', { reason: 'no auth frame in time' }) - before).toBe(20);
  });

  it('raw TCP connections that stall in the request line, the headers or the body are cut off by the server', async () => {
    const cases: [string, string][] = [
      ['nothing at all', ''],
      ['half a request line', 'GET /hea'],
      ['headers without their end', 'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n'],
      ['an upgrade request without its end', `GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`],
      ['half a body', 'POST /dev/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"userId":'],
    ];
    const started = Date.now();
    const results = await Promise.all(
      cases.map(async ([name, bytes]) => {
        const sock = await tcp();
        if (bytes) sock.write(bytes);
        const t0 = Date.now();
        const answer = (await readUntilClosed(sock, 10_000)).toString('latin1');
        return { name, ms: Date.now() - t0, answer };
      }),
    );
    for (const r of results) {
      // Cut off within the request timeout plus Node's checking interval.
      expect(r.ms, r.name).toBeLessThan(REQUEST_TIMEOUT_MS + 2000);
      // Node answers every stalled connection, even one that sent nothing, with 408 before closing it.
      expect(r.answer, r.name).toMatch(/^HTTP\/1\.1 408 /);
    }
    expect(Date.now() - started).toBeLessThan(REQUEST_TIMEOUT_MS + 3000);
  });

  it('an authenticated socket is not subject to the HTTP timeouts', async () => {
    const ws = await connectClient(c.wsUrl, { token, deviceId: 'long-lived' });
    clients.push(ws);
    await sleep(REQUEST_TIMEOUT_MS + 1500);
    ws.send({ type: 'ping' });
    await ws.next('pong');
    expect(ws.ws.readyState).toBe(WebSocket.OPEN);
  });
});

function tcp(): Promise<Socket> {
  const url = new URL(c.url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(url.port), url.hostname, () => resolve(sock));
    sock.on('error', reject);
  });
}

/** Everything the server sends until it closes the connection (or the time runs out: then rejects). */
function readUntilClosed(sock: Socket, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connection still open after ${timeoutMs} ms; got ${Buffer.concat(chunks).toString('latin1').slice(0, 200)}`));
    }, timeoutMs);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** A WebSocket handshake by hand; resolves with the socket right after the 101. */
async function rawUpgrade(): Promise<Socket> {
  const sock = await tcp();
  const key = randomBytes(16).toString('base64');
  sock.write(`GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const expectedAccept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  await new Promise<void>((resolve, reject) => {
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      sock.off('data', onData);
      if (!head.startsWith('HTTP/1.1 101') || !head.includes(expectedAccept)) reject(new Error(`no upgrade: ${head.slice(0, 200)}`));
      else {
        const rest = Buffer.from(head.slice(end + 4), 'latin1');
        if (rest.length) sock.unshift(rest);
        resolve();
      }
    };
    sock.on('data', onData);
  });
  return sock;
}
