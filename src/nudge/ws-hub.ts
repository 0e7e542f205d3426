/**
 * The WebSocket hub at GET /v1/ws on the coordinator's own HTTP server.
 * A socket must send `{type:'auth'}` first, within AUTH_TIMEOUT_MS; after
 * that it receives only its own user's nudges, may claim, and pings.
 * Protocol-level pings drop dead peers; bad frames get an error frame, never
 * a crash; frames above MAX_FRAME_BYTES close the socket (ws's maxPayload).
 *
 * One socket, one identity: a socket's frames are handled one at a time, in
 * order (auth is async), and a second auth frame closes it (4400). A socket
 * lives as long as its token: it is closed (4401) when the token expires,
 * unless the client sent a fresh token for the same user first (`reauth`);
 * a token for another user closes it (4400). A socket that stayed open past
 * its session would keep the router choosing it over the user's push
 * subscriptions while none of its claims could succeed. Caps
 * refuse the newest socket, never evict an older one: eviction would let a
 * reconnecting tab knock out another, which reconnects in turn.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { AuthError, type UserAuth } from '../auth/user-auth.js';
import type { ClaimService } from '../schedule/claims.js';
import type { PresenceStore } from '../devices/presence.js';
import { claimantOf } from '../schedule/claimant.js';
import { watchTokenExpiry, type TokenExpiry } from './token-expiry.js';
import { AUTH_TIMEOUT_MS, CLOSE_CODES, ClientFrame, MAX_FRAME_BYTES, type MissionChanged, type MissionDue, type ServerFrame } from './protocol.js';

export const WS_PATH = '/v1/ws';
/** A socket sending this many invalid frames is closed. */
const MAX_INVALID_FRAMES = 20;
/** Frames of one socket waiting to be handled (behind a slow auth, say); one more closes it. */
const MAX_QUEUED_FRAMES = 32;

interface Conn {
  id: string;
  ws: WebSocket;
  userId?: string;
  deviceId?: string;
  /** The holder its claims are made as: the device, or the device and this context. */
  claimant?: string;
  /** Closes the socket when its token expires; re-armed by each reauth. */
  expiry?: TokenExpiry;
  alive: boolean;
  invalid: number;
  authTimer?: NodeJS.Timeout;
  /** The tail of this socket's frame handling: each frame runs after the previous one. */
  queue: Promise<void>;
  queued: number;
  /** The presence row's write; removal on close waits for it, or the row would outlive the socket. */
  presenceWrite?: Promise<void>;
}

export interface WsHubDeps {
  auth: UserAuth;
  claims: ClaimService;
  presence: PresenceStore;
  /** Nudges still actionable for a user, sent right after auth (NOTIFY is only a hint). */
  pendingFor: (userId: string) => Promise<MissionDue[]>;
  log: Logger;
  registry: Registry;
  heartbeatMs?: number;
  authTimeoutMs?: number;
  /** Called for every refused socket authentication, with its code. */
  onAuthRefused?: (code: string) => void;
  /** Per-user claim budget shared with HTTP: ms to wait when the user has none left, else 0. */
  claimLimit?: (userId: string) => number;
  /** Authenticated sockets of one user on this instance (default 16); the newest past it is closed 4429. */
  maxSocketsPerUser?: number;
  /** Open sockets on this instance (default 10,000); an upgrade past it is answered 503. */
  maxSockets?: number;
  /** Called for every socket refused by a cap. */
  onCapRefused?: (cap: 'ws_per_user' | 'ws_total') => void;
  /** Called after auth-ok with the time zone the device sent in its auth frame, if any (not awaited). */
  onTimeZone?: (report: { userId: string; deviceId: string; timeZone: string }) => void;
}

export interface WsHub {
  attach(server: Server): void;
  /** Sends a nudge, or news of a server write to a mission, to every local socket of the user; returns how many got it. */
  deliver(userId: string, frame: MissionDue | MissionChanged): number;
  /** True when this instance holds a socket of the user. */
  hasLocal(userId: string): boolean;
  connections(): number;
  close(): Promise<void>;
}

export function createWsHub(deps: WsHubDeps): WsHub {
  const log = deps.log.child({ component: 'ws' });
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  const byUser = new Map<string, Set<Conn>>();
  const all = new Set<Conn>();
  const registers = [deps.registry];
  const gauge = new Gauge({ name: 'mana_ai_ws_connections', help: 'Authenticated WebSocket connections on this instance', registers });
  const framesIn = new Counter({ name: 'mana_ai_ws_frames_total', help: 'Client frames by outcome', labelNames: ['outcome'] as const, registers });
  const nudgesSent = new Counter({ name: 'mana_ai_ws_nudges_sent_total', help: 'mission-due frames sent', registers });
  const changesSent = new Counter({ name: 'mana_ai_ws_mission_changed_sent_total', help: 'mission-changed frames sent', registers });
  const closes = new Counter({ name: 'mana_ai_ws_closed_total', help: 'Sockets closed by the server, by reason', labelNames: ['reason'] as const, registers });

  function send(conn: Conn, frame: ServerFrame): void {
    if (conn.ws.readyState === conn.ws.OPEN) conn.ws.send(JSON.stringify(frame));
  }

  function closeWith(conn: Conn, code: number, reason: string): void {
    closes.inc({ reason });
    conn.ws.close(code, reason);
  }

  function protocolError(conn: Conn, code: string, message: string): void {
    framesIn.inc({ outcome: 'invalid' });
    send(conn, { type: 'error', code, message });
    if (++conn.invalid >= MAX_INVALID_FRAMES) closeWith(conn, CLOSE_CODES.protocolError, 'too many invalid frames');
  }

  /** `code` is the metric's (an AuthError code, or 'missing' when the first frame was not auth). */
  function refuseAuth(conn: Conn, code: string, message: string, reason: string): void {
    deps.onAuthRefused?.(code);
    send(conn, { type: 'error', code: reason === 'authentication failed' ? 'auth-failed' : 'auth-required', message });
    closeWith(conn, CLOSE_CODES.authFailed, reason);
  }

  /** Closes the socket with 4401 once its token has expired; returns the expiry as the frames carry it. */
  function armExpiry(conn: Conn, exp: unknown): TokenExpiry['frame'] {
    conn.expiry?.cancel();
    conn.expiry = watchTokenExpiry(exp, () => {
      log.info({ connId: conn.id, userId: conn.userId }, 'socket token expired; closing');
      send(conn, { type: 'error', code: 'token-expired', message: 'the token expired; authenticate a new socket' });
      closeWith(conn, CLOSE_CODES.authFailed, 'token expired');
    });
    return conn.expiry.frame;
  }

  /** A fresh token for the socket's own user moves its expiry; one for another user closes it. */
  async function reauthenticate(conn: Conn, token: string): Promise<void> {
    let verified: { userId: string; claims: { exp?: unknown } };
    try {
      verified = await deps.auth.verify(token);
    } catch (err: unknown) {
      deps.onAuthRefused?.(err instanceof AuthError ? err.code : 'error');
      // The socket keeps its current token, and closes when that one expires.
      return send(conn, { type: 'error', code: 'reauth-failed', message: (err as Error).message });
    }
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    if (verified.userId !== conn.userId) {
      framesIn.inc({ outcome: 'invalid' });
      send(conn, { type: 'error', code: 'reauth-other-user', message: 'a socket keeps the user it authenticated as' });
      return closeWith(conn, CLOSE_CODES.protocolError, 'reauth for another user');
    }
    send(conn, { type: 'reauth-ok', ...armExpiry(conn, verified.claims.exp) });
  }

  async function authenticate(conn: Conn, token: string, deviceId: string, contextId: string | undefined, timeZone: string | undefined): Promise<void> {
    let userId: string;
    let exp: unknown;
    try {
      const verified = await deps.auth.verify(token);
      userId = verified.userId;
      exp = verified.claims.exp;
    } catch (err: unknown) {
      const code = err instanceof AuthError ? err.code : 'error';
      log.info({ connId: conn.id, code, reason: (err as Error).message }, 'socket auth refused');
      return refuseAuth(conn, code, (err as Error).message, 'authentication failed');
    }
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    const maxPerUser = deps.maxSocketsPerUser ?? 16;
    if ((byUser.get(userId)?.size ?? 0) >= maxPerUser) {
      deps.onCapRefused?.('ws_per_user');
      log.info({ connId: conn.id, userId, maxPerUser }, 'socket refused: per-user cap');
      send(conn, { type: 'error', code: 'too-many-sockets', message: `this user already has ${maxPerUser} sockets open (WS_MAX_SOCKETS_PER_USER)` });
      return closeWith(conn, CLOSE_CODES.tooManySockets, `socket limit per user (${maxPerUser}) reached`);
    }
    conn.userId = userId;
    conn.deviceId = deviceId;
    conn.claimant = claimantOf(deviceId, contextId);
    // auth-ok goes out before the socket can receive any nudge.
    send(conn, { type: 'auth-ok', userId, deviceId, ...armExpiry(conn, exp) });
    let set = byUser.get(userId);
    if (!set) byUser.set(userId, (set = new Set()));
    set.add(conn);
    clearTimeout(conn.authTimer);
    conn.authTimer = undefined;
    gauge.set(++authenticated);
    if (timeZone !== undefined) deps.onTimeZone?.({ userId, deviceId, timeZone });
    // The socket is authenticated whatever happens below: a database blip must not
    // look like a bad token to the client. Local delivery works without the presence
    // row, and the ledger's deadlines cover a pending nudge not sent now.
    conn.presenceWrite = deps.presence.add({ connId: conn.id, userId, deviceId }).catch((err: unknown) => {
      log.warn({ err, connId: conn.id }, 'presence row not written; other instances may not see this socket until the next heartbeat');
    });
    await conn.presenceWrite;
    try {
      for (const frame of await deps.pendingFor(userId)) send(conn, frame);
    } catch (err: unknown) {
      log.warn({ err, connId: conn.id }, 'pending nudges not sent; their deadlines hand them to the fallback');
    }
  }

  async function onFrame(conn: Conn, raw: RawData, isBinary: boolean): Promise<void> {
    // Frames queued behind one that closed the socket are not handled.
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    if (isBinary) return protocolError(conn, 'binary-frame', 'expected a JSON text frame');
    let json: unknown;
    try {
      json = JSON.parse(raw.toString());
    } catch {
      return protocolError(conn, 'invalid-json', 'expected a JSON object');
    }
    const parsed = ClientFrame.safeParse(json);
    if (!parsed.success) {
      const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'frame'}: ${i.message}`).join('; ');
      if (!conn.userId) return refuseAuth(conn, 'missing', `expected {type:'auth', token, deviceId} first: ${msg}`, 'expected an auth frame first');
      return protocolError(conn, 'invalid-frame', msg);
    }
    const frame = parsed.data;
    framesIn.inc({ outcome: frame.type });
    if (!conn.userId) {
      if (frame.type !== 'auth') return refuseAuth(conn, 'missing', `expected {type:'auth'} first, got ${frame.type}`, 'expected an auth frame first');
      return authenticate(conn, frame.token, frame.deviceId, frame.contextId, frame.timeZone);
    }
    switch (frame.type) {
      case 'auth':
        // One socket, one identity: a second auth (even for the same user) is a protocol violation.
        framesIn.inc({ outcome: 'invalid' });
        send(conn, { type: 'error', code: 'already-authenticated', message: 'this socket is already authenticated' });
        return closeWith(conn, CLOSE_CODES.protocolError, 'second auth frame');
      case 'ping':
        return send(conn, { type: 'pong' });
      case 'reauth':
        return reauthenticate(conn, frame.token);
      case 'claim': {
        const waitMs = deps.claimLimit?.(conn.userId) ?? 0;
        if (waitMs > 0) {
          return send(conn, { type: 'claim-result', iterationId: frame.iterationId, granted: false, reason: `rate-limited; retry in ${Math.ceil(waitMs / 1000)} s` });
        }
        const out = await deps.claims.claim({ iterationId: frame.iterationId, userId: conn.userId, deviceId: conn.claimant! });
        if (out.kind === 'granted') {
          return send(conn, { type: 'claim-result', iterationId: frame.iterationId, granted: true, leaseExpiresAt: out.leaseExpiresAt });
        }
        return send(conn, { type: 'claim-result', iterationId: frame.iterationId, granted: false, reason: out.kind });
      }
    }
  }

  /** Kept as a count: summing every user's set on each connect and close was quadratic in a reconnect storm. */
  let authenticated = 0;

  function onConnection(ws: WebSocket): void {
    const conn: Conn = { id: randomUUID(), ws, alive: true, invalid: 0, queue: Promise.resolve(), queued: 0 };
    all.add(conn);
    conn.authTimer = setTimeout(() => {
      if (!conn.userId) closeWith(conn, CLOSE_CODES.authTimeout, 'no auth frame in time');
    }, deps.authTimeoutMs ?? AUTH_TIMEOUT_MS);
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('message', (raw, isBinary) => {
      conn.alive = true;
      if (++conn.queued > MAX_QUEUED_FRAMES) {
        framesIn.inc({ outcome: 'invalid' });
        return closeWith(conn, CLOSE_CODES.protocolError, 'too many frames in flight');
      }
      conn.queue = conn.queue
        .then(() => onFrame(conn, raw, isBinary))
        .catch((err: unknown) => {
          log.error({ err, connId: conn.id }, 'frame handling failed');
          send(conn, { type: 'error', code: 'internal', message: 'internal error' });
        })
        .finally(() => {
          conn.queued--;
        });
    });
    ws.on('error', (err) => {
      // ws closes the socket itself on a protocol violation (1002/1007/1009); count it like our own closes.
      const code = (err as { code?: string }).code;
      if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        framesIn.inc({ outcome: 'too_big' });
        closes.inc({ reason: 'frame too big' });
      } else if (code?.startsWith('WS_ERR_')) {
        framesIn.inc({ outcome: 'invalid' });
        closes.inc({ reason: 'protocol violation' });
      }
      log.debug({ err: err.message, code, connId: conn.id }, 'socket error');
    });
    ws.on('close', () => {
      clearTimeout(conn.authTimer);
      conn.expiry?.cancel();
      all.delete(conn);
      if (conn.userId) {
        const set = byUser.get(conn.userId);
        set?.delete(conn);
        if (set?.size === 0) byUser.delete(conn.userId);
        gauge.set(--authenticated);
        void (conn.presenceWrite ?? Promise.resolve())
          .then(() => deps.presence.remove(conn.id))
          .catch((err: unknown) => log.warn({ err }, 'presence removal failed'));
      }
    });
  }

  const heartbeat = setInterval(() => {
    for (const conn of all) {
      if (!conn.alive) {
        closes.inc({ reason: 'dead peer' });
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.ws.ping();
    }
  }, deps.heartbeatMs ?? 30_000);
  heartbeat.unref();

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    if (path !== WS_PATH) {
      socket.destroy();
      return;
    }
    socket.on('error', () => socket.destroy());
    const maxSockets = deps.maxSockets ?? 10_000;
    if (all.size >= maxSockets) {
      deps.onCapRefused?.('ws_total');
      const body = `socket limit of this instance (${maxSockets}, WS_MAX_SOCKETS) reached; retry later\n`;
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws));
  }

  return {
    attach(server) {
      server.on('upgrade', onUpgrade);
    },
    deliver(userId, frame) {
      const set = byUser.get(userId);
      if (!set) return 0;
      const text = JSON.stringify(frame);
      let n = 0;
      for (const conn of set) {
        if (conn.ws.readyState === conn.ws.OPEN) {
          conn.ws.send(text);
          n++;
        }
      }
      (frame.type === 'mission-due' ? nudgesSent : changesSent).inc(n);
      return n;
    },
    hasLocal(userId) {
      return byUser.has(userId);
    },
    connections: () => all.size,
    async close() {
      clearInterval(heartbeat);
      for (const conn of all) conn.ws.close(CLOSE_CODES.shuttingDown, 'server shutting down');
      // Give clients a moment to answer the close handshake, then cut the rest.
      await new Promise((r) => setTimeout(r, 100));
      for (const conn of all) conn.ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
