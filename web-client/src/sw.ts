/**
 * mana-ai service-worker helpers: wake-ups by Web Push.
 *
 * ```ts
 * // sw.ts of the webapp (a module service worker)
 * import { handlePush, handleNotificationClick, handlePushSubscriptionChange } from 'mana-ai/web-client/sw';
 * self.addEventListener('push', (e) => handlePush(e, { appUrl: '/', planInWorker }));
 * self.addEventListener('notificationclick', (e) => handleNotificationClick(e, { appUrl: '/' }));
 * self.addEventListener('pushsubscriptionchange', (e) => handlePushSubscriptionChange(e, loadSessionOptions));
 * ```
 *
 * Chrome subscribes with `userVisibleOnly: true`, so EVERY push must show a
 * notification (a duplicate too), or Chrome shows "This site has been updated
 * in the background" (and may take the permission away). The notification's
 * `tag` is the (first) mission id, so several wake-ups for one mission
 * collapse into one; a push naming several missions due together shows one
 * notification for all of them. It is shown within `timeLimitMs` whatever
 * hangs: the options source, getToken and the planner are each time-boxed,
 * and planning still running then is stopped and given back.
 */
import { contextDedupStore, type DedupStore, type DedupState } from './lib/dedup.js';
import type { MissionDue } from './protocol.js';
import { base64UrlToBytes } from './lib/base64url.js';
import { createApi, type FetchLike } from './lib/http.js';
import { defaultLocks, type LockManagerLike } from './lib/locks.js';
import { parsePushNudges } from './lib/push-payload.js';
import { PlanAborted } from './lib/lease.js';
import { createOccurrenceApi, newContextId } from './lib/occurrences.js';
import { fetchVapidKey, registerSubscription } from './lib/push.js';
import { localTimeZone } from './lib/time-zone.js';
import { runNudge, type NudgeOutcome, type PlanFn } from './lib/run-nudge.js';
import { toError, withTimeout } from './lib/timeout.js';

export type { NudgeOutcome } from './lib/run-nudge.js';
export { parseNudge } from './lib/nudge.js';
export { parseNudgeText, parsePushNudges } from './lib/push-payload.js';

export interface PushHandlerOptions {
  /** The coordinator (default: this worker's origin). */
  baseUrl?: string;
  /** Needed to plan in the worker (claim/complete/release are authenticated). */
  getToken?: () => Promise<string>;
  deviceId?: string;
  /**
   * Plans in the worker when given (with getToken and deviceId): claim →
   * plan → complete, or release on failure. Without it the worker only shows
   * "Mission due — open to plan" and the opened app plans it. Its `signal`
   * aborts at the time limit or when the lease is lost.
   */
  planInWorker?: PlanFn;
  /** The notification is shown by then at the latest; planning still running is stopped and given back (default 60 s). */
  timeLimitMs?: number;
  /** Opened or focused by a click on the notification (default: the registration's scope). */
  appUrl?: string;
  /** Notification title (default "Mana"). */
  title?: string;
  icon?: string;
  badge?: string;
  dedupMaxAgeMs?: number;
  /** Called with what happened, e.g. to tell open tabs (clients.matchAll → postMessage). */
  onHandled?: (nudge: MissionDue | null, outcome: NudgeOutcome | { kind: 'notified' }) => void | Promise<void>;
  /** Tests: replace primitives. */
  fetch?: FetchLike;
  dedup?: DedupStore;
  locks?: LockManagerLike | null;
}

/** Options, or a function resolving them (e.g. reading the session from IndexedDB); given at most 5 s. */
export type OptionsSource<T> = T | (() => T | Promise<T>);

const OPTIONS_TIMEOUT_MS = 5_000;
export const DEFAULT_PUSH_TIME_LIMIT_MS = 60_000;

/** Data attached to every notification this module shows. */
export interface NudgeNotificationData {
  /** The (first) mission the push named. */
  missionId?: string;
  iterationId?: string;
  /** A push naming several missions: all their iteration ids, and how many were planned here. */
  iterationIds?: string[];
  planned?: number;
  url: string;
  outcome: string;
}

const worker = (): ServiceWorkerGlobalScope => globalThis as unknown as ServiceWorkerGlobalScope;

function resolveOptions<T>(source: OptionsSource<T>): Promise<T> {
  return withTimeout(
    Promise.resolve().then(() => (typeof source === 'function' ? (source as () => T | Promise<T>)() : source)),
    OPTIONS_TIMEOUT_MS,
    `the options source did not answer within ${OPTIONS_TIMEOUT_MS} ms`,
  );
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The notification body for an outcome (pure; exported for tests and UIs). */
export function notificationBody(outcome: NudgeOutcome | { kind: 'notified' } | { kind: 'invalid' }): string {
  switch (outcome.kind) {
    case 'planned':
      return outcome.steps === undefined ? 'Proposals ready — open to review' : `${plural(outcome.steps, 'proposal')} ready`;
    case 'duplicate':
      return duplicateBody(outcome.state);
    case 'locked':
      return 'Mission is being planned in an open tab';
    case 'elsewhere':
    case 'lost':
      return 'Mission already handled on another device';
    case 'released':
      return 'Planning here failed — the server is planning it instead';
    case 'invalid':
      return 'Something is due — open to see';
    case 'failed':
    case 'notified':
      return 'Mission due — open to plan';
  }
}

function duplicateBody(state: DedupState | undefined): string {
  switch (state) {
    case 'planned':
    case 'staged':
      return 'Proposals ready — open to review';
    case 'elsewhere':
      return 'Mission already handled on another device';
    default:
      return 'Mission is being planned';
  }
}

/** True when the outcome left proposals ready on this device. */
function plannedHere(outcome: NudgeOutcome | { kind: 'notified' }): boolean {
  if (outcome.kind === 'planned') return true;
  return outcome.kind === 'duplicate' && (outcome.state === 'planned' || outcome.state === 'staged');
}

/** The one notification's body for a push that named several missions (pure; exported for tests and UIs). */
export function batchNotificationBody(outcomes: (NudgeOutcome | { kind: 'notified' })[]): string {
  const n = outcomes.length;
  const planned = outcomes.filter(plannedHere).length;
  if (planned === n) return `${n} missions planned — proposals ready`;
  if (planned > 0) return `${planned} of ${n} missions planned — open to see the rest`;
  return `${n} missions due — open to plan`;
}

/**
 * Handles a `push` event. Calls `event.waitUntil` synchronously; inside it,
 * always shows one notification within the time limit, whatever fails or
 * hangs before. A push naming several missions (due together) plans all of
 * them, one after another, and still shows one notification saying how many
 * were planned. An options source that resolves to `null` means signed out:
 * a neutral notification naming nothing, and no claim.
 */
export function handlePush(event: PushEvent, options: OptionsSource<PushHandlerOptions | null> = {}): void {
  let text: string | null = null;
  try {
    text = event.data ? event.data.text() : null;
  } catch {
    text = null;
  }
  const nudges = text === null ? [] : parsePushNudges(text);
  event.waitUntil(pushWork(nudges, options));
}

/** Plans each nudge in turn into `outcomes` (filled as it goes, so a time limit shows what is known). */
async function planAll(nudges: MissionDue[], opts: PushHandlerOptions, outcomes: Outcome[], signal: AbortSignal): Promise<void> {
  if (nudges.length === 0 || !opts.planInWorker || !opts.getToken || !opts.deviceId) return;
  const api = createApi({
    baseUrl: opts.baseUrl ?? worker().location.origin,
    getToken: opts.getToken,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  const dedup = contextDedupStore(opts.dedup, (e) => console.warn('mana-ai: IndexedDB failed; this push keeps its records in memory', toError(e)), { maxAgeMs: opts.dedupMaxAgeMs });
  // This push event's own context: the server grants it or an open tab, never both.
  const occurrences = createOccurrenceApi(api, opts.deviceId, newContextId('sw'));
  const locks = opts.locks === undefined ? defaultLocks() : opts.locks;
  try {
    // One after another: each claims before planning, so the exactly-once rules are
    // the WebSocket path's; planning them all at once would only compete for the device.
    for (const [i, nudge] of nudges.entries()) {
      if (signal.aborted) break;
      outcomes[i] = await runNudge(nudge, { dedup, occurrences, locks, plan: opts.planInWorker, emit: () => undefined, user: api.user, signal });
    }
  } finally {
    if (!opts.dedup) dedup.close();
  }
}

type Outcome = NudgeOutcome | { kind: 'notified' };

async function pushWork(nudges: MissionDue[], source: OptionsSource<PushHandlerOptions | null>): Promise<void> {
  const sw = worker();
  const started = Date.now();
  const outcomes: Outcome[] = nudges.map(() => ({ kind: 'notified' }));
  let opts: PushHandlerOptions | null = {};
  try {
    opts = await resolveOptions(source);
  } catch (e: unknown) {
    // Still show the notification below; the app plans when opened.
    console.warn('mana-ai: push handling failed', toError(e));
  }
  if (opts === null) {
    // Signed out: whoever uses this browser now must not see what was due, nor have it claimed.
    await sw.registration.showNotification('Mana', { body: notificationBody({ kind: 'invalid' }), tag: 'mana-ai', data: { url: appUrlOf(undefined), outcome: 'signed-out' } });
    return;
  }
  const o = opts;
  const limit = new AbortController();
  const timer = setTimeout(() => limit.abort(new PlanAborted('timeout')), Math.max(0, (o.timeLimitMs ?? DEFAULT_PUSH_TIME_LIMIT_MS) - (Date.now() - started)));
  const work = planAll(nudges, o, outcomes, limit.signal).catch((e: unknown) => console.warn('mana-ai: push handling failed', toError(e)));
  await Promise.race([work, new Promise((r) => limit.signal.addEventListener('abort', r))]);

  const first = nudges[0];
  const single = nudges.length <= 1;
  const planned = outcomes.filter(plannedHere).length;
  const data: NudgeNotificationData = {
    ...(first ? { missionId: first.missionId, iterationId: first.iterationId } : {}),
    ...(single ? {} : { iterationIds: nudges.map((n) => n.iterationId), planned }),
    url: appUrlOf(o.appUrl),
    outcome: single ? (outcomes[0]?.kind ?? 'invalid') : planned === nudges.length ? 'planned' : planned > 0 ? 'partly-planned' : 'notified',
  };
  await sw.registration.showNotification(o.title ?? 'Mana', {
    body: single ? notificationBody(outcomes[0] ?? { kind: 'invalid' }) : batchNotificationBody(outcomes),
    tag: first ? first.missionId : 'mana-ai',
    data,
    ...(o.icon ? { icon: o.icon } : {}),
    ...(o.badge ? { badge: o.badge } : {}),
  });
  // Planning stopped at the limit gives its occurrence back; let that finish inside the event.
  await work;
  clearTimeout(timer);
  try {
    if (nudges.length === 0) await o.onHandled?.(null, { kind: 'notified' });
    for (const [i, nudge] of nudges.entries()) await o.onHandled?.(nudge, outcomes[i]!);
  } catch (e: unknown) {
    console.warn('mana-ai: onHandled failed', toError(e));
  }
}

function appUrlOf(appUrl: string | undefined): string {
  const sw = worker();
  return new URL(appUrl ?? sw.registration.scope, sw.location.origin).href;
}

function trimSlash(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

/**
 * Handles `notificationclick`: focuses an open window of the app (and posts
 * it `{type:'mana-ai:notification-click', missionId, iterationId}`), or opens
 * the app.
 */
export function handleNotificationClick(event: NotificationEvent, options: { appUrl?: string } = {}): void {
  event.notification.close();
  const data = (event.notification.data ?? {}) as Partial<NudgeNotificationData>;
  event.waitUntil(
    (async () => {
      const sw = worker();
      const target = new URL(options.appUrl ?? data.url ?? sw.registration.scope, sw.location.origin);
      const targetPath = trimSlash(target.pathname);
      const windows = await sw.clients.matchAll({ type: 'window', includeUncontrolled: true });
      const open = windows.find((c) => {
        const url = new URL(c.url);
        const path = trimSlash(url.pathname);
        return url.origin === target.origin && (path === targetPath || path.startsWith(`${targetPath}/`));
      });
      const message = { type: 'mana-ai:notification-click', missionId: data.missionId, iterationId: data.iterationId };
      if (open) {
        const focused = await open.focus().catch(() => open);
        focused.postMessage(message);
        return;
      }
      await sw.clients.openWindow(target.href);
    })(),
  );
}

export interface SubscriptionChangeOptions {
  baseUrl?: string;
  getToken: () => Promise<string>;
  deviceId: string;
  fetch?: FetchLike;
}

/**
 * Handles `pushsubscriptionchange`: registers the browser's new subscription,
 * or subscribes again with the server's current key, so pushes keep arriving.
 */
export function handlePushSubscriptionChange(
  event: PushSubscriptionChangeEvent,
  options: OptionsSource<SubscriptionChangeOptions | null>,
): void {
  event.waitUntil(
    (async () => {
      const opts = await resolveOptions(options);
      if (!opts) return; // Signed out: nothing to register.
      const sw = worker();
      const api = createApi({
        baseUrl: opts.baseUrl ?? sw.location.origin,
        getToken: opts.getToken,
        ...(opts.fetch ? { fetch: opts.fetch } : {}),
      });
      let sub: PushSubscription | null = event.newSubscription;
      if (!sub) {
        const key = await fetchVapidKey(api);
        if (key === null) return;
        sub = await sw.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64UrlToBytes(key) });
      }
      await registerSubscription(api, opts.deviceId, sub, localTimeZone());
    })().catch((e: unknown) => {
      console.warn('mana-ai: re-registering the push subscription failed', toError(e));
    }),
  );
}
