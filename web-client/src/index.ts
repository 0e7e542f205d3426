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
import { contextDedupStore, type DedupStore } from './lib/dedup.js';
import type { MissionDue, ServerFrame } from './protocol.js';
import { createConnection, type Connection, type ConnectionStatus, type WebSocketCtor } from './lib/connection.js';
import { createEmitter, type MissionClientEventBody, type MissionClientListener, type NudgeSource } from './lib/events.js';
import { catchUpNudges } from './lib/catch-up.js';
import { createApi, type FetchLike } from './lib/http.js';
import { PlanAborted } from './lib/lease.js';
import { defaultLocks, type LockManagerLike } from './lib/locks.js';
import { createOccurrenceApi, newContextId } from './lib/occurrences.js';
import { disablePushSubscription, enablePushSubscription, pushManagerOf, type EnablePushResult } from './lib/push-enable.js';
import type { PushManagerLike } from './lib/push.js';
import { runNudge, suppresses, type NudgeOutcome, type PlanFn } from './lib/run-nudge.js';
import { stageServerIterations, type MissionLike, type StageFn } from './lib/stage.js';
import { errorEvent, toError } from './lib/timeout.js';
import { webSocketUrl } from './lib/url.js';
import { localTimeZone } from './lib/time-zone.js';

export type { DedupState, DedupEntry, DedupMark, DedupStore } from './lib/dedup.js';
export type { MissionClientEvent, MissionClientEventType, MissionClientListener, ErrorStage, NudgeSource } from './lib/events.js';
export type { NudgeOutcome, PlanFn } from './lib/run-nudge.js';
export type { ReleaseCode } from './lib/occurrences.js';
export { PlanAborted } from './lib/lease.js';
export type { MissionLike, MissionIteration } from './lib/stage.js';
export type { PushManagerLike, PushSubscriptionLike, PushErrorCode } from './lib/push.js';
export type { EnablePushResult } from './lib/push-enable.js';
export type { ConnectionStatus, WebSocketLike, WebSocketCtor } from './lib/connection.js';
export type { MissionDue, MissionChanged, ServerFrame, ClientFrame, ClaimResult } from './protocol.js';
export { PushError } from './lib/push.js';
export { ApiError } from './lib/http.js';
export { TimeoutError } from './lib/timeout.js';
export { openDedupStore, createMemoryDedupStore, withMemoryFallback } from './lib/dedup.js';
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
   * releases the occurrence so the server plans it at once. Its `signal`
   * aborts when this tab lost the lease, after `planTimeoutMs`, or on
   * signOut: stop then, without writing.
   */
  planLocally: PlanFn;
  /** Optional hook for a server-planned iteration; called once per iteration id in this browser. */
  stageIteration?: StageFn;
  /** Planning in this tab stops and the occurrence is given back after this long (default 5 min). */
  planTimeoutMs?: number;
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
  /**
   * Leaving the session: cancels this tab's planning (giving it back),
   * closes the socket, unsubscribes push here and on the server, and forgets
   * this user's dedup and staging records. Call it while the token still
   * works; create a new client for the next user.
   */
  signOut(options?: Omit<EnablePushOptions, 'timeoutMs'>): Promise<void>;
  /** Calls `stageIteration` for each server-planned iteration of the mission not staged before; resolves to their ids. */
  stageServerIterations(mission: MissionLike): Promise<string[]>;
  /** Handles a nudge that reached the page another way (e.g. a message from the service worker). */
  handleNudge(nudge: MissionDue, via?: NudgeSource): Promise<NudgeOutcome>;
  /** Subscribes to events; returns the unsubscribe function. */
  onEvent(listener: MissionClientListener): () => void;
  state(): MissionClientState;
}

/** Creates the client; nothing happens until `start()`. */
export function createMissionClient(options: MissionClientOptions): MissionClient {
  const { baseUrl, getToken, deviceId } = options;
  const log: LogFn = options.log ?? (() => undefined);
  const hiddenPauseMs = options.hiddenPauseMs ?? 5 * 60 * 1000;
  const emitter = createEmitter((e) => log('error', 'event listener threw', { err: toError(e).message }));
  const emit = emitter.emit;
  // Claims are granted per context: this tab's own, unique among the browser's tabs and its worker.
  const contextId = newContextId('tab');
  // A socket that cannot claim must not stay open: the server would keep choosing it over push.
  const api = createApi({ baseUrl, getToken, fetch: options.fetch, onAuthLost: (reason) => connection?.drop(reason) });
  const occurrences = createOccurrenceApi(api, deviceId, contextId);
  const maxAge = { maxAgeMs: options.dedupMaxAgeMs };
  const dedup = contextDedupStore(
    options.dedup,
    (e) => {
      const message = `IndexedDB failed (${toError(e).message}); this tab keeps its records in memory`;
      log('warn', message);
      emit({ type: 'warning', code: 'storage-fallback', message });
    },
    maxAge,
  );
  const locks = options.locks === undefined ? defaultLocks() : options.locks;
  const inFlight = new Map<string, Promise<NudgeOutcome>>();
  const timeZone = options.timeZone ?? localTimeZone;
  const doc = typeof document === 'undefined' ? undefined : document;
  const win = typeof window !== 'undefined' && typeof window.addEventListener === 'function' ? window : undefined;
  let running = false;
  let hiddenTimer: ReturnType<typeof setTimeout> | undefined;
  let push: MissionClientState['push'] = 'unknown';
  let connection: Connection | null = null;
  let cancel = new AbortController();
  const user = () => api.user() ?? connection?.state().userId;
  /** Logged and emitted alike. */
  const report = (event: Extract<MissionClientEventBody, { type: 'connected' | 'disconnected' }>) => {
    log('info', event.type, event);
    emit(event);
  };

  function getConnection(): Connection {
    if (connection) return connection;
    const WS = options.WebSocket ?? (globalThis.WebSocket as unknown as WebSocketCtor | undefined);
    if (!WS) throw new Error('WebSocket is not available in this context');
    connection = createConnection({
      url: webSocketUrl(baseUrl),
      deviceId,
      contextId,
      getToken,
      timeZone,
      WebSocket: WS,
      pingIntervalMs: options.pingIntervalMs,
      pongTimeoutMs: options.pongTimeoutMs,
      onFrame: handleFrame,
      onConnected(info) {
        report({ type: 'connected', ...info });
        if (options.catchUp !== false) void catchUp();
      },
      onDisconnected: (info) => report({ type: 'disconnected', ...info }),
      onError(stage, error) {
        log('warn', 'socket error', { stage, err: error.message });
        emit(errorEvent(stage, error));
      },
    });
    return connection;
  }

  function handleFrame(frame: ServerFrame): void {
    // claim-result is ignored: this client claims over HTTP.
    if (frame.type === 'mission-due') void handleNudge(frame, 'ws');
    // The server wrote to the mission: the app pulls it now rather than at its next lazy pull.
    else if (frame.type === 'mission-changed') emit(frame);
    else if (frame.type === 'error') emit(errorEvent('socket', new Error(`${frame.code}: ${frame.message}`)));
  }

  async function handleNudge(nudge: MissionDue, via: NudgeSource = 'ws'): Promise<NudgeOutcome> {
    const { missionId, iterationId, dueAt } = nudge;
    emit({ type: 'nudge', missionId, iterationId, dueAt, via });
    if (inFlight.has(iterationId)) {
      emit({ type: 'skipped', missionId, iterationId, reason: 'locked' });
      return { kind: 'locked' };
    }
    const run = runNudge(nudge, { dedup, occurrences, locks, plan: options.planLocally, emit, user, signal: cancel.signal, planTimeoutMs: options.planTimeoutMs });
    inFlight.set(iterationId, run);
    try {
      const outcome = await run;
      log('info', 'nudge handled', { iterationId, outcome: outcome.kind });
      return outcome;
    } finally {
      inFlight.delete(iterationId);
    }
  }

  /**
   * Occurrences this tab should still act on (nudged while it was closed,
   * hidden or offline; handed back to devices; claimed by it with the answer lost).
   */
  async function catchUp(): Promise<void> {
    try {
      const body = await api.json<unknown>('GET', `/v1/occurrences?deviceId=${encodeURIComponent(deviceId)}&contextId=${contextId}`);
      for (const nudge of catchUpNudges(body, Date.now())) {
        if (suppresses(await dedup.get(nudge.iterationId).catch(() => undefined), nudge.attempt)) continue;
        // Not awaited: each has its own deadline; one slow plan must not starve the rest.
        void handleNudge(nudge, 'catch-up');
      }
    } catch (e: unknown) {
      emit(errorEvent('catch-up', e));
    }
  }

  function onVisibilityChange(): void {
    clearTimeout(hiddenTimer);
    if (doc?.visibilityState !== 'hidden') return wake();
    hiddenTimer = setTimeout(() => {
      log('info', 'tab hidden; pausing the socket', { hiddenPauseMs });
      connection?.pause();
    }, hiddenPauseMs);
  }

  function wake(): void {
    clearTimeout(hiddenTimer);
    if (running) connection?.resume();
  }

  const listeners = [
    [doc, 'visibilitychange', onVisibilityChange],
    [win, 'focus', wake],
    [win, 'online', wake],
  ] as const;

  function stop(): void {
    if (!running) return;
    running = false;
    clearTimeout(hiddenTimer);
    for (const [target, type, fn] of listeners) target?.removeEventListener(type, fn);
    connection?.stop();
  }

  /** A push step: a failure is an `error` event (stage `push`) and thrown. */
  async function pushStep<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (e: unknown) {
      emit(errorEvent('push', e));
      throw toError(e);
    }
  }

  async function unsubscribe(pushManager: PushManagerLike | null): Promise<void> {
    await disablePushSubscription({ api, deviceId, pushManager });
    push = 'disabled';
    emit({ type: 'push-disabled' });
  }

  return {
    start() {
      if (running) return;
      running = true;
      if (cancel.signal.aborted) cancel = new AbortController();
      getConnection().start();
      for (const [target, type, fn] of listeners) target?.addEventListener(type, fn);
      if (doc?.visibilityState === 'hidden') onVisibilityChange();
    },

    stop,

    async signOut(opts = {}) {
      const who = user();
      // Planning here is given back (code 'cancelled') while the token still works.
      cancel.abort(new PlanAborted('cancelled'));
      stop();
      await Promise.allSettled([...inFlight.values()]);
      // The subscription would keep waking this browser for the previous user.
      await pushStep(async () => unsubscribe(await pushManagerOf(opts).catch(() => null))).catch(() => undefined);
      emit({ type: 'signed-out', cleared: await dedup.clear(who).catch(() => 0) });
    },

    enablePush: (opts = {}) =>
      pushStep(async () => {
        const result = await enablePushSubscription({ api, deviceId, pushManager: await pushManagerOf(opts), timeZone: timeZone(), timeoutMs: opts.timeoutMs });
        push = 'enabled';
        emit({ type: 'push-enabled', renewed: result.renewed, endpointOrigin: new URL(result.endpoint).origin });
        return result;
      }),

    disablePush: (opts = {}) => pushStep(async () => unsubscribe(await pushManagerOf(opts))),

    async stageServerIterations(mission) {
      const stageIteration = options.stageIteration;
      return stageIteration ? stageServerIterations(mission, { dedup, locks, stageIteration, emit, user, ...maxAge }) : [];
    },

    handleNudge,

    onEvent: emitter.on,

    state() {
      const { status = 'idle', attempt = 0, ...rest } = connection?.state() ?? {};
      return { running, deviceId, connection: status, reconnectAttempt: attempt, ...rest, inFlight: [...inFlight.keys()], push, hidden: doc?.visibilityState === 'hidden' };
    },
  };
}
