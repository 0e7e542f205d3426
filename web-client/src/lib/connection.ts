/**
 * One WebSocket to the coordinator: auth frame first, app-level ping/pong
 * (a missing pong means the socket is dead, even if TCP has not noticed),
 * reconnect with full-jitter exponential backoff that resets once a
 * connection authenticates, and pause/resume for hidden tabs.
 *
 * A live socket is one that can claim: before its token expires it sends a
 * fresh one (`reauth`); when it cannot get one it closes (4002), so the
 * server stops choosing this socket over the user's push subscriptions.
 * Close codes that say retrying cannot help (4400 protocol, 4401 auth, 4429
 * too many sockets) stop the loop in status `refused`; focus and `online`
 * try again, after the backoff.
 */
import type { ClientFrame, ServerFrame } from '../protocol.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
import { parseServerFrame } from './frames.js';
import { toError } from './timeout.js';

/** The part of the browser WebSocket this uses (so tests can pass a fake). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: Event) => unknown) | null;
  onmessage: ((ev: MessageEvent) => unknown) | null;
  onerror: ((ev: Event) => unknown) | null;
  onclose: ((ev: CloseEvent) => unknown) | null;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

export type ConnectionStatus = 'idle' | 'connecting' | 'authenticating' | 'open' | 'waiting' | 'paused' | 'refused' | 'stopped';

export interface ConnectionDeps {
  url: string;
  deviceId: string;
  /** This tab's context id, sent in the auth frame: its socket claims as this context. */
  contextId?: string;
  getToken: () => Promise<string>;
  WebSocket: WebSocketCtor;
  /** The device's IANA time zone, sent with the auth frame (the server plans in it); undefined sends none. */
  timeZone?: () => string | undefined;
  /** Every frame after auth-ok, except pongs. */
  onFrame: (frame: ServerFrame) => void;
  onConnected: (info: { userId: string; deviceId: string }) => void;
  onDisconnected: (info: { code: number; reason: string; willReconnect: boolean; reconnectInMs?: number }) => void;
  onError: (stage: 'connect' | 'socket', error: Error) => void;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** Client-side guard in case the server neither answers nor closes after the auth frame. */
  authTimeoutMs?: number;
  /** A fresh token is sent this long before the current one expires (at most half its life; default 60 s). */
  reauthMarginMs?: number;
  backoff?: BackoffOptions;
  random?: () => number;
  now?: () => number;
}

export interface ConnectionState {
  status: ConnectionStatus;
  userId?: string;
  /** Reconnect attempts since the last successful auth. */
  attempt: number;
  /** Epoch ms of the scheduled reconnect while `waiting`. */
  nextReconnectAt?: number;
}

export interface Connection {
  start(): void;
  /** Closes for good (until start()). */
  stop(): void;
  /** Closes and stays closed until resume(); used while the tab is hidden. */
  pause(): void;
  /** Leaves a pause at once; leaves `refused` after the backoff (focus, `online`); a backoff wait runs on. */
  resume(): void;
  /** Closes the socket because this client cannot claim (no token); reconnects through the backoff. */
  drop(reason: string): void;
  state(): ConnectionState;
  send(frame: ClientFrame): boolean;
}

const OPEN = 1;
/** Close codes a client may send are 1000 or 3000–4999; these are ours. */
export const CLIENT_CLOSE = { normal: 1000, heartbeat: 4000, authGuard: 4001, noToken: 4002 } as const;
/** Server close codes retrying cannot help: a bad frame, a refused token, too many sockets. */
export const NO_RETRY_CODES: readonly number[] = [4400, 4401, 4429];

export function createConnection(deps: ConnectionDeps): Connection {
  const pingIntervalMs = deps.pingIntervalMs ?? 25_000;
  const pongTimeoutMs = deps.pongTimeoutMs ?? 10_000;
  const authTimeoutMs = deps.authTimeoutMs ?? 10_000;
  const reauthMarginMs = deps.reauthMarginMs ?? 60_000;
  const backoff = deps.backoff ?? DEFAULT_BACKOFF;
  const now = deps.now ?? (() => Date.now());

  let status: ConnectionStatus = 'idle';
  let socket: WebSocketLike | null = null;
  let attempt = 0;
  let userId: string | undefined;
  let nextReconnectAt: number | undefined;
  // Bumped whenever a connect attempt becomes stale (stop, pause, new attempt).
  let generation = 0;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  let pingTimer: ReturnType<typeof setInterval> | undefined;
  let pongTimer: ReturnType<typeof setTimeout> | undefined;
  let authTimer: ReturnType<typeof setTimeout> | undefined;
  let reauthTimer: ReturnType<typeof setTimeout> | undefined;

  const active = () => status !== 'idle' && status !== 'stopped' && status !== 'paused' && status !== 'refused';

  function clearTimers(): void {
    clearTimeout(reconnectTimer);
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    clearTimeout(authTimer);
    clearTimeout(reauthTimer);
    reconnectTimer = pingTimer = pongTimer = authTimer = reauthTimer = undefined;
  }

  function send(frame: ClientFrame): boolean {
    if (!socket || socket.readyState !== OPEN) return false;
    try {
      socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Detaches and closes the current socket; its late events are ignored. */
  function dropSocket(code: number, reason: string): void {
    const s = socket;
    socket = null;
    clearTimers();
    if (!s) return;
    s.onopen = s.onmessage = s.onerror = s.onclose = null;
    try {
      s.close(code, reason);
    } catch {
      // Already closing or closed.
    }
  }

  function scheduleReconnect(code: number, reason: string, report = true): void {
    const delay = backoffDelay(attempt, backoff, deps.random);
    attempt++;
    status = 'waiting';
    nextReconnectAt = now() + delay;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      nextReconnectAt = undefined;
      void connect();
    }, delay);
    if (report) deps.onDisconnected({ code, reason, willReconnect: true, reconnectInMs: delay });
  }

  /** A socket we gave up on (heartbeat, auth guard, error before open). */
  function fail(code: number, reason: string): void {
    dropSocket(code, reason);
    if (active()) scheduleReconnect(code, reason);
  }

  /** The app's token; undefined once getToken failed (reported, unless `gen` went stale meanwhile). */
  async function freshToken(gen: number, live: () => boolean): Promise<string | undefined> {
    try {
      return await deps.getToken();
    } catch (e: unknown) {
      if (gen === generation && live()) deps.onError('connect', new Error('getToken failed', { cause: toError(e) }));
      return undefined;
    }
  }

  async function connect(): Promise<void> {
    if (!active() || socket) return;
    const gen = ++generation;
    status = 'connecting';
    const token = await freshToken(gen, active);
    if (gen !== generation || !active()) return;
    if (token === undefined) return scheduleReconnect(0, 'no token');

    let s: WebSocketLike;
    try {
      s = new deps.WebSocket(deps.url);
    } catch (e: unknown) {
      deps.onError('connect', toError(e));
      scheduleReconnect(0, 'cannot open socket');
      return;
    }
    socket = s;

    s.onopen = () => {
      status = 'authenticating';
      const timeZone = deps.timeZone?.();
      send({ type: 'auth', token, deviceId: deps.deviceId, ...(deps.contextId ? { contextId: deps.contextId } : {}), ...(timeZone ? { timeZone } : {}) });
      authTimer = setTimeout(() => fail(CLIENT_CLOSE.authGuard, 'no auth-ok'), authTimeoutMs);
    };
    // No onerror: the browser gives no detail there; the close event that
    // follows says what happened and schedules the reconnect.
    s.onclose = (ev) => {
      if (socket !== s) return;
      socket = null;
      clearTimers();
      userId = undefined;
      if (!active()) return;
      if (!NO_RETRY_CODES.includes(ev.code)) return scheduleReconnect(ev.code, ev.reason);
      status = 'refused';
      deps.onDisconnected({ code: ev.code, reason: ev.reason, willReconnect: false });
    };
    s.onmessage = (ev) => {
      if (socket !== s || typeof ev.data !== 'string') return;
      const frame = parseServerFrame(ev.data);
      if (!frame) return;
      // Any frame proves the socket alive.
      clearTimeout(pongTimer);
      pongTimer = undefined;
      if (frame.type === 'auth-ok') {
        clearTimeout(authTimer);
        authTimer = undefined;
        status = 'open';
        attempt = 0;
        userId = frame.userId;
        startHeartbeat();
        reauthBefore(frame);
        deps.onConnected({ userId: frame.userId, deviceId: frame.deviceId });
        return;
      }
      if (frame.type === 'reauth-ok') return reauthBefore(frame);
      // The fresh token did not verify: this socket cannot stay past its expiry.
      if (frame.type === 'error' && frame.code === 'reauth-failed') return fail(CLIENT_CLOSE.noToken, 'token not renewed');
      if (frame.type === 'pong') return;
      deps.onFrame(frame);
    };
  }

  /**
   * Sends a fresh token before the current one expires (the time left: the
   * server's own figure, else its expiry by this clock). A token that did
   * not extend the expiry (the app had no newer one) is tried again at half
   * the time left, until the server closes the socket at expiry (4401).
   */
  function reauthBefore(frame: { expiresAt?: string; expiresInMs?: number }): void {
    clearTimeout(reauthTimer);
    const leftMs = frame.expiresInMs ?? (frame.expiresAt ? Date.parse(frame.expiresAt) - now() : NaN);
    if (!Number.isFinite(leftMs)) return;
    const gen = generation;
    const open = () => status === 'open';
    reauthTimer = setTimeout(async () => {
      const token = await freshToken(gen, open);
      if (gen !== generation || !open()) return;
      if (token === undefined) fail(CLIENT_CLOSE.noToken, 'token not renewed');
      else send({ type: 'reauth', token });
    }, Math.max(1000, leftMs - Math.min(reauthMarginMs, leftMs / 2)));
  }

  function startHeartbeat(): void {
    clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      if (!send({ type: 'ping' })) return;
      if (pongTimer === undefined) {
        pongTimer = setTimeout(() => fail(CLIENT_CLOSE.heartbeat, 'no pong'), pongTimeoutMs);
      }
    }, pingIntervalMs);
  }

  function begin(): void {
    status = 'waiting';
    attempt = 0;
    void connect();
  }

  /** Closes on purpose (stop, pause) and stays closed; an open socket's close is reported. */
  function halt(next: 'stopped' | 'paused', reason: string): void {
    generation++;
    const hadSocket = socket !== null;
    status = next;
    dropSocket(CLIENT_CLOSE.normal, reason);
    nextReconnectAt = userId = undefined;
    if (hadSocket) deps.onDisconnected({ code: CLIENT_CLOSE.normal, reason, willReconnect: false });
  }

  return {
    start() {
      if (!active()) begin();
    },
    stop() {
      if (status !== 'stopped' && status !== 'idle') halt('stopped', 'client stopped');
    },
    pause() {
      if (active()) halt('paused', 'tab hidden');
    },
    resume() {
      if (status === 'paused') {
        begin();
      } else if (status === 'refused') {
        // Each focus or online event after a refusal waits longer: a tab flapping focus must not hammer the server.
        scheduleReconnect(0, 'retry after refusal', false);
      }
    },
    drop(reason) {
      if (socket) fail(CLIENT_CLOSE.noToken, reason);
    },
    state() {
      return {
        status,
        attempt,
        ...(userId === undefined ? {} : { userId }),
        ...(nextReconnectAt === undefined ? {} : { nextReconnectAt }),
      };
    },
    send,
  };
}
