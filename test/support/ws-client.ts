/**
 * A real `ws` client for the tests: opens (and optionally authenticates) a
 * socket to the hub and records every frame with its arrival time.
 */
import WebSocket from 'ws';
import type { ServerFrame } from '../../src/nudge/protocol.js';

export interface WsClient {
  ws: WebSocket;
  frames: ServerFrame[];
  /** Date.now() at each frame's arrival, parallel to `frames`. */
  arrivals: number[];
  /** Frames of type mission-due received so far. */
  nudges(): Extract<ServerFrame, { type: 'mission-due' }>[];
  send(frame: unknown): void;
  /** Resolves with the first frame (already received or later) that matches. */
  next<T extends ServerFrame['type']>(type: T, match?: (f: Extract<ServerFrame, { type: T }>) => boolean, timeoutMs?: number): Promise<Extract<ServerFrame, { type: T }>>;
  closed: Promise<{ code: number; reason: string }>;
  close(): Promise<void>;
}

/** Opens a socket without authenticating (tests of the auth handshake). */
export async function openSocket(url: string): Promise<WsClient> {
  const ws = new WebSocket(url);
  const frames: ServerFrame[] = [];
  const arrivals: number[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (raw) => {
    arrivals.push(Date.now());
    frames.push(JSON.parse(raw.toString()) as ServerFrame);
    for (const w of [...waiters]) w();
  });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const w of [...waiters]) w();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const client: WsClient = {
    ws,
    frames,
    arrivals,
    nudges: () => frames.filter((f): f is Extract<ServerFrame, { type: 'mission-due' }> => f.type === 'mission-due'),
    send: (frame) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)),
    next(type, match, timeoutMs = 5000) {
      type F = Extract<ServerFrame, { type: typeof type }>;
      const find = () => frames.find((f): f is F => f.type === type && (!match || match(f as F)));
      const found = find();
      if (found) return Promise.resolve(found);
      return new Promise<F>((resolve, reject) => {
        const check = () => {
          const f = find();
          if (f) {
            done();
            resolve(f);
          } else if (ws.readyState === ws.CLOSED) {
            done();
            reject(new Error(`socket closed while waiting for a ${type} frame; got ${JSON.stringify(frames)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${type} frame within ${timeoutMs} ms; got ${JSON.stringify(frames)}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
      }) as never;
    },
    closed,
    async close() {
      if (ws.readyState !== ws.CLOSED) {
        ws.close();
        await closed;
      }
    },
  };
  return client;
}

/** Opens a socket and authenticates it; resolves after auth-ok. */
export async function connectClient(url: string, opts: { token: string; deviceId: string; contextId?: string }): Promise<WsClient> {
  const client = await openSocket(url);
  client.send({ type: 'auth', token: opts.token, deviceId: opts.deviceId, ...(opts.contextId ? { contextId: opts.contextId } : {}) });
  await client.next('auth-ok');
  return client;
}
