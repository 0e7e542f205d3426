/**
 * Web Push from a tab: VAPID key → `pushManager.subscribe` (time-boxed) →
 * `PUT /v1/devices/:deviceId/push-subscription`; re-subscribes when the
 * server's key no longer matches the subscription's (key rotation); and the
 * way back (unsubscribe + DELETE), which sign-out uses.
 */
import { unexpected, type Api } from './http.js';
import { base64UrlToBytes } from './base64url.js';
import { fetchVapidKey, PushError, subscriptionBody, subscriptionPath, type PushManagerLike, type PushSubscriptionLike } from './push.js';
import { toError, withTimeout } from './timeout.js';

export const DEFAULT_SUBSCRIBE_TIMEOUT_MS = 10_000;

/** Byte-wise equality of two keys. */
export function sameBytes(a: ArrayBuffer | ArrayBufferView, b: ArrayBuffer | ArrayBufferView): boolean {
  const x = a instanceof ArrayBuffer ? new Uint8Array(a) : new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** True when the subscription was made for another key (rotation). Unknown (null) counts as the same. */
export function keyRotated(sub: PushSubscriptionLike, serverKey: Uint8Array): boolean {
  const current = sub.options?.applicationServerKey;
  return current != null && !sameBytes(current, serverKey);
}

export interface EnablePushDeps {
  api: Api;
  deviceId: string;
  pushManager: PushManagerLike;
  timeoutMs?: number;
  /** The device's IANA time zone, registered with the subscription. */
  timeZone?: string;
}

export interface EnablePushResult {
  endpoint: string;
  /** A new subscription replaced one made for an older key. */
  renewed: boolean;
  /** A new subscription was created (false: the existing one was re-registered). */
  created: boolean;
}

/** Subscribes (or reuses a subscription for the current key) and registers it with the server. */
export async function enablePushSubscription(deps: EnablePushDeps): Promise<EnablePushResult> {
  const { api, deviceId, pushManager } = deps;
  const timeoutMs = deps.timeoutMs ?? DEFAULT_SUBSCRIBE_TIMEOUT_MS;
  const publicKey = await fetchVapidKey(api);
  if (publicKey === null) throw new PushError('push-disabled', 'push is not enabled on this server');
  const serverKey = base64UrlToBytes(publicKey);

  let sub = await pushManager.getSubscription();
  let renewed = false;
  if (sub && keyRotated(sub, serverKey)) {
    // A subscription is bound to one key; a push signed with the new key
    // would be refused by the push service, so start over.
    await sub.unsubscribe().catch(() => false);
    sub = null;
    renewed = true;
  }
  const created = sub === null;
  if (!sub) {
    try {
      sub = await withTimeout(
        pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: serverKey }),
        timeoutMs,
        `pushManager.subscribe() did not answer within ${timeoutMs} ms (offline?)`,
      );
    } catch (e: unknown) {
      const err = toError(e);
      if (err.name === 'TimeoutError') throw new PushError('subscribe-timeout', err.message, { cause: err });
      throw new PushError('subscribe-failed', `pushManager.subscribe() failed: ${err.message}`, { cause: err });
    }
  }
  const body = subscriptionBody(sub, deps.timeZone);
  try {
    await api.json('PUT', subscriptionPath(deviceId), body);
  } catch (e: unknown) {
    throw new PushError('register-failed', `registering the push subscription failed: ${toError(e).message}`, { cause: e });
  }
  return { endpoint: body.endpoint, renewed, created };
}

/** Unsubscribes in the browser (when there is a PushManager) and deletes the server's copy (both attempted). */
export async function disablePushSubscription(deps: Omit<EnablePushDeps, 'timeoutMs' | 'pushManager'> & { pushManager: PushManagerLike | null }): Promise<void> {
  const sub = await deps.pushManager?.getSubscription();
  let unsubscribeError: unknown;
  if (sub) {
    try {
      await sub.unsubscribe();
    } catch (e: unknown) {
      unsubscribeError = e;
    }
  }
  const res = await deps.api.request('DELETE', subscriptionPath(deps.deviceId));
  if (!res.ok && res.status !== 404) throw unexpected('DELETE push-subscription', res);
  if (unsubscribeError !== undefined) throw toError(unsubscribeError);
}

/**
 * The PushManager to use: the one given, else the given registration's,
 * else the page's registration's; a PushError when there is none.
 */
export async function pushManagerOf(opts: { pushManager?: PushManagerLike; serviceWorker?: ServiceWorkerRegistration }): Promise<PushManagerLike> {
  if (opts.pushManager) return opts.pushManager;
  const registration =
    opts.serviceWorker ??
    (typeof navigator !== 'undefined' && navigator.serviceWorker ? await navigator.serviceWorker.getRegistration() : undefined);
  if (!registration) throw new PushError('no-service-worker', 'no service worker registration for this page: pass { serviceWorker }');
  return registration.pushManager as unknown as PushManagerLike;
}
