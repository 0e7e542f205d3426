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
 * in the background". The notification's `tag` is the (first) mission id, so
 * several wake-ups for one mission collapse into one; a push naming several
 * missions due together shows one notification for all of them.
 */
import { openDedupStore, createMemoryDedupStore, type DedupStore, type DedupState } from './dedup.js';
import type { MissionDue } from './protocol.js';
import { base64UrlToBytes } from './lib/base64url.js';
import { createApi, type FetchLike } from './lib/http.js';
import { defaultLocks, type LockManagerLike } from './lib/locks.js';
import { parsePushNudges } from './lib/nudge.js';
import { createOccurrenceApi } from './lib/occurrences.js';
import { fetchVapidKey, registerSubscription } from './lib/push.js';
import { localTimeZone } from './lib/time-zone.js';
import { runNudge, type NudgeOutcome } from './lib/run-nudge.js';
import { toError } from './lib/timeout.js';

export type { NudgeOutcome } from './lib/run-nudge.js';
export { parseNudge, parseNudgeText, parsePushNudges } from './lib/nudge.js';

export interface PushHandlerOptions {
  /** The coordinator (default: this worker's origin). */
  baseUrl?: string;
  /** Needed to plan in the worker (claim/complete/release are authenticated). */
  getToken?: () => Promise<string>;
  deviceId?: string;
  /**
   * Plans in the worker when given (with getToken and deviceId): claim →
   * plan → complete, or release on failure. Without it the worker only shows
   * "Mission due — open to plan" and the opened app plans it.
   */
  planInWorker?: (missionId: string, iterationId: string) => Promise<{ steps: number } | void>;
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

/** Options, or a function resolving them (e.g. reading the session from IndexedDB). */
export type OptionsSource<T> = T | (() => T | Promise<T>);

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

async function resolveOptions<T>(source: OptionsSource<T>): Promise<T> {
  return typeof source === 'function' ? await (source as () => T | Promise<T>)() : source;
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
 * always ends by showing one notification, whatever fails before. A push
 * naming several missions (due together) plans all of them, one after
 * another, and still shows one notification saying how many were planned.
 */
export function handlePush(event: PushEvent, options: OptionsSource<PushHandlerOptions> = {}): void {
  let text: string | null = null;
  try {
    text = event.data ? event.data.text() : null;
  } catch {
    text = null;
  }
  const nudges = text === null ? [] : parsePushNudges(text);
  event.waitUntil(pushWork(nudges, options));
}

async function planAll(nudges: MissionDue[], opts: PushHandlerOptions): Promise<(NudgeOutcome | { kind: 'notified' })[]> {
  const outcomes: (NudgeOutcome | { kind: 'notified' })[] = nudges.map(() => ({ kind: 'notified' }));
  if (nudges.length === 0 || !opts.planInWorker || !opts.getToken || !opts.deviceId) return outcomes;
  const api = createApi({
    baseUrl: opts.baseUrl ?? worker().location.origin,
    getToken: opts.getToken,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  const maxAge = opts.dedupMaxAgeMs ? { maxAgeMs: opts.dedupMaxAgeMs } : {};
  const dedup = opts.dedup ?? (typeof indexedDB === 'undefined' ? createMemoryDedupStore(maxAge) : openDedupStore(maxAge));
  const occurrences = createOccurrenceApi(api, opts.deviceId);
  const locks = opts.locks === undefined ? defaultLocks() : opts.locks;
  try {
    // One after another: each claims before planning, so the exactly-once rules are
    // the WebSocket path's; planning them all at once would only compete for the device.
    for (const [i, nudge] of nudges.entries()) {
      outcomes[i] = await runNudge(nudge, { dedup, occurrences, locks, plan: opts.planInWorker, emit: () => undefined });
    }
  } finally {
    if (!opts.dedup) dedup.close();
  }
  return outcomes;
}

async function pushWork(nudges: MissionDue[], source: OptionsSource<PushHandlerOptions>): Promise<void> {
  const sw = worker();
  let opts: PushHandlerOptions = {};
  let outcomes: (NudgeOutcome | { kind: 'notified' })[] = nudges.map(() => ({ kind: 'notified' }));
  try {
    opts = await resolveOptions(source);
    outcomes = await planAll(nudges, opts);
  } catch (e: unknown) {
    // Still show the notification below; the app plans when opened.
    console.warn('mana-ai: push handling failed', toError(e));
  }

  const first = nudges[0];
  const single = nudges.length <= 1;
  const planned = outcomes.filter(plannedHere).length;
  const data: NudgeNotificationData = {
    ...(first ? { missionId: first.missionId, iterationId: first.iterationId } : {}),
    ...(single ? {} : { iterationIds: nudges.map((n) => n.iterationId), planned }),
    url: appUrlOf(opts.appUrl),
    outcome: single ? (outcomes[0]?.kind ?? 'invalid') : planned === nudges.length ? 'planned' : planned > 0 ? 'partly-planned' : 'notified',
  };
  await sw.registration.showNotification(opts.title ?? 'Mana', {
    body: single ? notificationBody(outcomes[0] ?? { kind: 'invalid' }) : batchNotificationBody(outcomes),
    tag: first ? first.missionId : 'mana-ai',
    data,
    ...(opts.icon ? { icon: opts.icon } : {}),
    ...(opts.badge ? { badge: opts.badge } : {}),
  });
  try {
    if (nudges.length === 0) await opts.onHandled?.(null, { kind: 'notified' });
    for (const [i, nudge] of nudges.entries()) await opts.onHandled?.(nudge, outcomes[i]!);
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
