/**
 * One WebSocket to the coordinator: auth frame first, app-level ping/pong
 * (a missing pong means the socket is dead, even if TCP has not noticed),
 * reconnect with full-jitter exponential backoff that resets once a
 * connection authenticates, and pause/resume for hidden tabs.
 */
import type { ClientFrame, ServerFrame } from '../protocol.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
import { parseServerFrame } from './nudge.js';
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

export type ConnectionStatus = 'idle' | 'connecting' | 'authenticating' | 'open' | 'waiting' | 'paused' | 'stopped';

export interface ConnectionDeps {
  url: string;
  deviceId: string;
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
  /** Leaves a pause, or cuts a backoff wait short (focus, `online`). */
  resume(): void;
  state(): ConnectionState;
  send(frame: ClientFrame): boolean;
}

const OPEN = 1;
/** Close codes a client may send are 1000 or 3000–4999; these are ours. */
const CLIENT_CLOSE = { normal: 1000, heartbeat: 4000, authGuard: 4001 } as const;

export function createConnection(deps: ConnectionDeps): Connection {
  const pingIntervalMs = deps.pingIntervalMs ?? 25_000;
  const pongTimeoutMs = deps.pongTimeoutMs ?? 10_000;
  const authTimeoutMs = deps.authTimeoutMs ?? 10_000;
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

  const active = () => status !== 'idle' && status !== 'stopped' && status !== 'paused';

  function clearTimers(): void {
    clearTimeout(reconnectTimer);
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    clearTimeout(authTimer);
    reconnectTimer = pingTimer = pongTimer = authTimer = undefined;
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

  function scheduleReconnect(code: number, reason: string): void {
    const delay = backoffDelay(attempt, backoff, deps.random);
    attempt++;
    status = 'waiting';
    nextReconnectAt = now() + delay;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      nextReconnectAt = undefined;
      void connect();
    }, delay);
    deps.onDisconnected({ code, reason, willReconnect: true, reconnectInMs: delay });
  }

  /** A socket we gave up on (heartbeat, auth guard, error before open). */
  function fail(code: number, reason: string): void {
    dropSocket(code, reason);
    if (active()) scheduleReconnect(code, reason);
  }

  async function connect(): Promise<void> {
    if (!active() || socket) return;
    const gen = ++generation;
    status = 'connecting';
    let token: string;
    try {
      token = await deps.getToken();
    } catch (e: unknown) {
      if (gen !== generation || !active()) return;
      deps.onError('connect', new Error('getToken failed', { cause: toError(e) }));
      scheduleReconnect(0, 'no token');
      return;
    }
    if (gen !== generation || !active()) return;

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
      send({ type: 'auth', token, deviceId: deps.deviceId, ...(timeZone ? { timeZone } : {}) });
      authTimer = setTimeout(() => fail(CLIENT_CLOSE.authGuard, 'no auth-ok'), authTimeoutMs);
    };
    s.onerror = () => {
      // The browser gives no detail here; the close event that follows says
      // what happened and schedules the reconnect.
    };
    s.onclose = (ev) => {
      if (socket !== s) return;
      socket = null;
      clearTimers();
      userId = undefined;
      if (active()) scheduleReconnect(ev.code, ev.reason);
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
        deps.onConnected({ userId: frame.userId, deviceId: frame.deviceId });
        return;
      }
      if (frame.type === 'pong') return;
      deps.onFrame(frame);
    };
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

  return {
    start() {
      if (active()) return;
      status = 'waiting';
      attempt = 0;
      void connect();
    },
    stop() {
      if (status === 'stopped' || status === 'idle') return;
      generation++;
      const hadSocket = socket !== null;
      status = 'stopped';
      dropSocket(CLIENT_CLOSE.normal, 'client stopped');
      nextReconnectAt = undefined;
      userId = undefined;
      if (hadSocket) deps.onDisconnected({ code: CLIENT_CLOSE.normal, reason: 'client stopped', willReconnect: false });
    },
    pause() {
      if (!active()) return;
      generation++;
      const hadSocket = socket !== null;
      status = 'paused';
      dropSocket(CLIENT_CLOSE.normal, 'tab hidden');
      nextReconnectAt = undefined;
      userId = undefined;
      if (hadSocket) deps.onDisconnected({ code: CLIENT_CLOSE.normal, reason: 'tab hidden', willReconnect: false });
    },
    resume() {
      if (status === 'paused') {
        status = 'waiting';
        attempt = 0;
        void connect();
      } else if (status === 'waiting' && reconnectTimer !== undefined) {
        clearTimeout(reconnectTimer);
        reconnectTimer = undefined;
        nextReconnectAt = undefined;
        void connect();
      }
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
