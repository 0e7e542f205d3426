/**
 * Web Push registration shared by tabs and the service worker: the server's
 * VAPID key, the subscription body, `PUT /v1/devices/:deviceId/push-subscription`.
 * Subscribing and unsubscribing from a tab is push-enable.ts (the worker
 * does not load it).
 */
import { ApiError, type Api } from './http.js';

/** What this needs of a PushSubscription (tests pass fakes). */
export interface PushSubscriptionLike {
  readonly endpoint: string;
  readonly options?: { readonly applicationServerKey: ArrayBuffer | null };
  toJSON(): PushSubscriptionJSON;
  unsubscribe(): Promise<boolean>;
}

/** What this needs of a PushManager (tests and e2e pass fakes). */
export interface PushManagerLike {
  getSubscription(): Promise<PushSubscriptionLike | null>;
  subscribe(options: { userVisibleOnly: boolean; applicationServerKey: BufferSource }): Promise<PushSubscriptionLike>;
}

/** Stable error codes of push failures, for UIs. */
export type PushErrorCode = 'push-disabled' | 'subscribe-timeout' | 'subscribe-failed' | 'bad-subscription' | 'register-failed' | 'no-service-worker';

export class PushError extends Error {
  readonly code: PushErrorCode;
  constructor(code: PushErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PushError';
    this.code = code;
  }
}

export const subscriptionPath = (deviceId: string) => `/v1/devices/${encodeURIComponent(deviceId)}/push-subscription`;

/** The server's VAPID public key (base64url), or null when push is off (404). */
export async function fetchVapidKey(api: Api): Promise<string | null> {
  const res = await api.request<{ publicKey?: unknown }>('GET', '/v1/push/vapid-public-key', undefined, { auth: false });
  if (res.status === 404) return null;
  const key = res.body?.publicKey;
  if (!res.ok || typeof key !== 'string' || key.length === 0) {
    throw new ApiError(`GET /v1/push/vapid-public-key: ${res.status}`, res.status, 'bad_vapid_key');
  }
  return key;
}

/** The JSON body the server stores (with the device's time zone when known); throws when the browser's subscription lacks keys. */
export function subscriptionBody(
  sub: PushSubscriptionLike,
  timeZone?: string,
): { endpoint: string; expirationTime: number | null; keys: { p256dh: string; auth: string }; timeZone?: string } {
  const json = sub.toJSON();
  const p256dh = json.keys?.['p256dh'];
  const auth = json.keys?.['auth'];
  const endpoint = json.endpoint ?? sub.endpoint;
  if (!endpoint || !p256dh || !auth) throw new PushError('bad-subscription', 'push subscription has no endpoint or keys');
  return { endpoint, expirationTime: json.expirationTime ?? null, keys: { p256dh, auth }, ...(timeZone ? { timeZone } : {}) };
}

/** Registers a subscription the browser handed over (pushsubscriptionchange). */
export async function registerSubscription(api: Api, deviceId: string, sub: PushSubscriptionLike, timeZone?: string): Promise<void> {
  await api.json('PUT', subscriptionPath(deviceId), subscriptionBody(sub, timeZone));
}
