/**
 * mana-ai browser client: the tab side of "the server wakes one of the user's
 * devices to plan a due mission".
 *
 * ```ts
 * const client = createMissionClient({ baseUrl, getToken, deviceId, planLocally, stageIteration });
 * client.onEvent((e) => console.log(e.type, e));
 * client.start();
 * await client.enablePush({ serviceWorker: await navigator.serviceWorker.register('/sw.js') });
 * ```
 *
 * Dependency-free at runtime; frame types come from the server (type-only).
 */
import { openDedupStore, createMemoryDedupStore, type DedupStore } from './dedup.js';
import type { MissionDue, ServerFrame } from './protocol.js';
import { createConnection, type Connection, type ConnectionStatus, type WebSocketCtor } from './lib/connection.js';
import { createEmitter, type MissionClientListener, type NudgeSource } from './lib/events.js';
import { createApi, type FetchLike } from './lib/http.js';
import { defaultLocks, type LockManagerLike } from './lib/locks.js';
import { createOccurrenceApi } from './lib/occurrences.js';
import { isUuid } from './lib/nudge.js';
import {
  disablePushSubscription,
  enablePushSubscription,
  PushError,
  type EnablePushResult,
  type PushManagerLike,
} from './lib/push.js';
import { runNudge, type NudgeOutcome, type PlanFn } from './lib/run-nudge.js';
import { stageServerIterations, type MissionLike, type StageFn } from './lib/stage.js';
import { toError } from './lib/timeout.js';
import { webSocketUrl } from './lib/url.js';
import { localTimeZone } from './lib/time-zone.js';

export type { DedupState, DedupEntry, DedupStore } from './dedup.js';
export type { MissionClientEvent, MissionClientEventType, MissionClientListener, ErrorStage, NudgeSource } from './lib/events.js';
export type { NudgeOutcome } from './lib/run-nudge.js';
export type { MissionLike, MissionIteration } from './lib/stage.js';
export type { PushManagerLike, PushSubscriptionLike, PushErrorCode, EnablePushResult } from './lib/push.js';
export type { ConnectionStatus, WebSocketLike, WebSocketCtor } from './lib/connection.js';
export type { MissionDue, MissionChanged, ServerFrame, ClientFrame, ClaimResult } from './protocol.js';
export { PushError } from './lib/push.js';
export { ApiError } from './lib/http.js';
export { TimeoutError } from './lib/timeout.js';
export { openDedupStore, createMemoryDedupStore } from './dedup.js';
export { CLOSE_CODES, AUTH_TIMEOUT_MS, MAX_FRAME_BYTES } from './protocol.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFn = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

export interface MissionClientOptions {
  /** The coordinator's origin (and optional path prefix), e.g. `https://ai.mana.example`. */
  baseUrl: string;
  /** A current user JWT; called for every connect and HTTP call, so it may refresh. */
  getToken: () => Promise<string>;
  /** This browser profile's stable id (letters, digits, `.` `_` `:` `-`; ≤ 128). */
  deviceId: string;
  /**
   * The webapp's planner: plans the mission, writes the iteration (id =
   * `iterationId`) back through sync and creates local proposals. Throwing
   * releases the occurrence so the server plans it at once.
   */
  planLocally: PlanFn;
  /** Turns a server-planned iteration into local proposals; called once per iteration id. */
  stageIteration: StageFn;
  /** Dedup entries older than this are forgotten (default 7 days). */
  dedupMaxAgeMs?: number;
  /** A tab hidden this long closes its socket until it is visible again (default 5 min). */
  hiddenPauseMs?: number;
  log?: LogFn;
  /** After each (re)connect, pick up occurrences still waiting for a device (default true). */
  catchUp?: boolean;
  /**
   * The device's IANA time zone, sent with the socket auth and the push
   * subscription (the server advances missions it planned there). Default:
   * the browser's (`Intl.DateTimeFormat().resolvedOptions().timeZone`).
   */
  timeZone?: () => string | undefined;
  /** Advanced / tests: replace the browser's primitives. */
  WebSocket?: WebSocketCtor;
  fetch?: FetchLike;
  dedup?: DedupStore;
  locks?: LockManagerLike | null;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
}

export interface EnablePushOptions {
  /** The registration whose PushManager to use (default: the page's registration). */
  serviceWorker?: ServiceWorkerRegistration;
  /** Replaces the registration's PushManager (tests, offline e2e). */
  pushManager?: PushManagerLike;
  /** How long `pushManager.subscribe()` may take before failing (default 10 s). */
  timeoutMs?: number;
}

export interface MissionClientState {
  running: boolean;
  deviceId: string;
  connection: ConnectionStatus;
  userId?: string;
  reconnectAttempt: number;
  nextReconnectAt?: number;
  /** Iteration ids being handled by this tab right now. */
  inFlight: string[];
  push: 'unknown' | 'enabled' | 'disabled';
  hidden: boolean;
}

export interface MissionClient {
  /** Connects (idempotent). */
  start(): void;
  /** Disconnects and removes listeners (idempotent); in-flight plans run to their end. */
  stop(): void;
  /** Subscribes to Web Push and registers the subscription; idempotent, call on each load once opted in. */
  enablePush(options?: EnablePushOptions): Promise<EnablePushResult>;
  disablePush(options?: Omit<EnablePushOptions, 'timeoutMs'>): Promise<void>;
  /** Stages each server-planned iteration of the mission not staged before; resolves to their ids. */
  stageServerIterations(mission: MissionLike): Promise<string[]>;
  /** Handles a nudge that reached the page another way (e.g. a message from the service worker). */
  handleNudge(nudge: MissionDue, via?: NudgeSource): Promise<NudgeOutcome>;
  /** Subscribes to events; returns the unsubscribe function. */
  onEvent(listener: MissionClientListener): () => void;
  state(): MissionClientState;
}

/** Statuses of occurrences still waiting for a device to claim them. */
const CATCH_UP_STATUSES = new Set(['nudged']);

interface OccurrenceRow {
  iterationId?: unknown;
  missionId?: unknown;
  dueAt?: unknown;
  status?: unknown;
  claimedBy?: unknown;
  deadlineAt?: unknown;
}

/** Creates the client; nothing happens until `start()`. */
export function createMissionClient(options: MissionClientOptions): MissionClient {
  const { baseUrl, getToken, deviceId } = options;
  const log: LogFn = options.log ?? (() => undefined);
  const hiddenPauseMs = options.hiddenPauseMs ?? 5 * 60 * 1000;
  const emitter = createEmitter((e) => log('error', 'event listener threw', { err: toError(e).message }));
  const emit = emitter.emit;
  const api = createApi({ baseUrl, getToken, ...(options.fetch ? { fetch: options.fetch } : {}) });
  const occurrences = createOccurrenceApi(api, deviceId);
  const dedup =
    options.dedup ??
    (typeof indexedDB === 'undefined'
      ? createMemoryDedupStore({ ...(options.dedupMaxAgeMs ? { maxAgeMs: options.dedupMaxAgeMs } : {}) })
      : openDedupStore({ ...(options.dedupMaxAgeMs ? { maxAgeMs: options.dedupMaxAgeMs } : {}) }));
  const locks = options.locks === undefined ? defaultLocks() : options.locks;
  const inFlight = new Set<string>();
  const timeZone = options.timeZone ?? localTimeZone;
  const doc: Document | undefined = typeof document === 'undefined' ? undefined : document;
  let running = false;
  let hiddenTimer: ReturnType<typeof setTimeout> | undefined;
  let push: MissionClientState['push'] = 'unknown';
  let connection: Connection | null = null;

  function getConnection(): Connection {
    if (connection) return connection;
    const WS = options.WebSocket ?? (globalThis.WebSocket as unknown as WebSocketCtor | undefined);
    if (!WS) throw new Error('WebSocket is not available in this context');
    connection = createConnection({
      url: webSocketUrl(baseUrl),
      deviceId,
      getToken,
      timeZone,
      WebSocket: WS,
      ...(options.pingIntervalMs ? { pingIntervalMs: options.pingIntervalMs } : {}),
      ...(options.pongTimeoutMs ? { pongTimeoutMs: options.pongTimeoutMs } : {}),
      onFrame: handleFrame,
      onConnected(info) {
        log('info', 'connected', info);
        emit({ type: 'connected', ...info });
        if (options.catchUp !== false) void catchUp();
      },
      onDisconnected(info) {
        log('info', 'disconnected', info);
        emit({ type: 'disconnected', ...info });
      },
      onError(stage, error) {
        log('warn', 'socket error', { stage, err: error.message });
        emit({ type: 'error', stage, message: error.message, error });
      },
    });
    return connection;
  }

  function handleFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'mission-due':
        void handleNudge(frame, 'ws');
        break;
      case 'mission-changed':
        // The server wrote to the mission: the app pulls it now rather than at its next lazy pull.
        emit({ type: 'mission-changed', missionId: frame.missionId, ...(frame.iterationId ? { iterationId: frame.iterationId } : {}) });
        break;
      case 'error': {
        const error = new Error(`${frame.code}: ${frame.message}`);
        emit({ type: 'error', stage: 'socket', message: error.message, error });
        break;
      }
      default:
        // claim-result: this client claims over HTTP; nothing else is expected.
        break;
    }
  }

  async function handleNudge(nudge: MissionDue, via: NudgeSource = 'ws'): Promise<NudgeOutcome> {
    const { missionId, iterationId, dueAt } = nudge;
    emit({ type: 'nudge', missionId, iterationId, dueAt, via });
    if (inFlight.has(iterationId)) {
      emit({ type: 'skipped', missionId, iterationId, reason: 'locked' });
      return { kind: 'locked' };
    }
    inFlight.add(iterationId);
    try {
      const outcome = await runNudge(nudge, { dedup, occurrences, locks, plan: options.planLocally, emit });
      log('info', 'nudge handled', { iterationId, outcome: outcome.kind });
      return outcome;
    } finally {
      inFlight.delete(iterationId);
    }
  }

  /** Occurrences nudged while this tab was closed, hidden or offline (e.g. a push the user tapped). */
  async function catchUp(): Promise<void> {
    try {
      const body = await api.json<unknown>('GET', '/v1/occurrences');
      // A bare array is the contract; `{ occurrences: [...] }` is tolerated.
      const rows = Array.isArray(body) ? body : (body as { occurrences?: unknown } | undefined)?.occurrences;
      if (!Array.isArray(rows)) return;
      const now = Date.now();
      for (const row of rows as OccurrenceRow[]) {
        const { iterationId, missionId, dueAt, status, claimedBy, deadlineAt } = row;
        if (!isUuid(iterationId) || typeof missionId !== 'string' || typeof dueAt !== 'string') continue;
        if (typeof status !== 'string' || !CATCH_UP_STATUSES.has(status)) continue;
        if (claimedBy !== null && claimedBy !== undefined) continue;
        if (typeof deadlineAt === 'string' && Date.parse(deadlineAt) <= now) continue;
        const known = await dedup.get(iterationId).catch(() => undefined);
        if (known) continue;
        // Not awaited: each has its own deadline; one slow plan must not starve the rest.
        void handleNudge({ type: 'mission-due', missionId, iterationId, dueAt }, 'catch-up');
      }
    } catch (e: unknown) {
      const error = toError(e);
      emit({ type: 'error', stage: 'catch-up', message: error.message, error });
    }
  }

  function onVisibilityChange(): void {
    if (!doc) return;
    if (doc.visibilityState === 'hidden') {
      clearTimeout(hiddenTimer);
      hiddenTimer = setTimeout(() => {
        hiddenTimer = undefined;
        log('info', 'tab hidden; pausing the socket', { hiddenPauseMs });
        connection?.pause();
      }, hiddenPauseMs);
    } else {
      wake();
    }
  }

  function wake(): void {
    clearTimeout(hiddenTimer);
    hiddenTimer = undefined;
    if (running) connection?.resume();
  }

  const onFocus = () => wake();
  const onOnline = () => wake();

  async function pushManagerFor(opts: EnablePushOptions): Promise<PushManagerLike> {
    if (opts.pushManager) return opts.pushManager;
    const registration =
      opts.serviceWorker ??
      (typeof navigator !== 'undefined' && navigator.serviceWorker ? await navigator.serviceWorker.getRegistration() : undefined);
    if (!registration) {
      throw new PushError('no-service-worker', 'no service worker registration for this page: pass { serviceWorker }');
    }
    return registration.pushManager as unknown as PushManagerLike;
  }

  return {
    start() {
      if (running) return;
      running = true;
      getConnection().start();
      if (doc) {
        doc.addEventListener('visibilitychange', onVisibilityChange);
        if (doc.visibilityState === 'hidden') onVisibilityChange();
      }
      if (typeof window !== 'undefined' && typeof window.addEventListener === 'function') {
        window.addEventListener('focus', onFocus);
        window.addEventListener('online', onOnline);
      }
    },

    stop() {
      if (!running) return;
      running = false;
      clearTimeout(hiddenTimer);
      hiddenTimer = undefined;
      doc?.removeEventListener('visibilitychange', onVisibilityChange);
      if (typeof window !== 'undefined' && typeof window.removeEventListener === 'function') {
        window.removeEventListener('focus', onFocus);
        window.removeEventListener('online', onOnline);
      }
      connection?.stop();
    },

    async enablePush(opts = {}) {
      try {
        const pushManager = await pushManagerFor(opts);
        const result = await enablePushSubscription({
          api,
          deviceId,
          pushManager,
          timeZone: timeZone(),
          ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
        });
        push = 'enabled';
        emit({ type: 'push-enabled', renewed: result.renewed, endpointOrigin: new URL(result.endpoint).origin });
        return result;
      } catch (e: unknown) {
        const error = toError(e);
        emit({ type: 'error', stage: 'push', message: error.message, error });
        throw error;
      }
    },

    async disablePush(opts = {}) {
      try {
        await disablePushSubscription({ api, deviceId, pushManager: await pushManagerFor(opts) });
        push = 'disabled';
        emit({ type: 'push-disabled' });
      } catch (e: unknown) {
        const error = toError(e);
        emit({ type: 'error', stage: 'push', message: error.message, error });
        throw error;
      }
    },

    stageServerIterations(mission) {
      return stageServerIterations(mission, { dedup, locks, stageIteration: options.stageIteration, emit });
    },

    handleNudge,

    onEvent(listener) {
      return emitter.on(listener);
    },

    state() {
      const c = connection?.state();
      return {
        running,
        deviceId,
        connection: c?.status ?? 'idle',
        reconnectAttempt: c?.attempt ?? 0,
        ...(c?.userId === undefined ? {} : { userId: c.userId }),
        ...(c?.nextReconnectAt === undefined ? {} : { nextReconnectAt: c.nextReconnectAt }),
        inFlight: [...inFlight],
        push,
        hidden: doc?.visibilityState === 'hidden',
      };
    },
  };
}
