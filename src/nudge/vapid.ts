/**
 * VAPID (RFC 8292) for Web Push: key helpers and a per-audience JWT cache.
 *
 * `web-push` signs a fresh ES256 JWT for every message; signing dominates its
 * per-message cost. A JWT is valid for any request to the same push-service
 * origin until it expires, so we sign one per audience and reuse it until
 * less than an hour (or a quarter of its lifetime, if shorter) remains.
 */
import { createECDH } from 'node:crypto';
import webpush from 'web-push';

/** Push services accept at most 24 h; 12 h is web-push's default and ours. */
export const VAPID_MAX_TTL_SECONDS = 12 * 60 * 60;
const REFRESH_MARGIN_SECONDS = 60 * 60;
/** Audiences are push-service origins: few. This only bounds a misuse. */
const MAX_CACHED_AUDIENCES = 1_000;

export interface VapidKeyPair {
  /** base64url of the 65-byte uncompressed P-256 public key (the `applicationServerKey`). */
  publicKey: string;
  /** base64url of the 32-byte P-256 private scalar. */
  privateKey: string;
}

export interface VapidOptions extends VapidKeyPair {
  /** `mailto:` address or `https:` URL the push service may contact. */
  subject: string;
  /** Clock in ms since the epoch; defaults to `Date.now`. */
  now?: () => number;
  /** JWT lifetime, 60 s … 12 h; default 12 h. */
  ttlSeconds?: number;
}

export interface VapidHeaders {
  /** The public key, as subscriptions must name it. */
  readonly publicKey: string;
  /** The `Authorization: vapid t=…, k=…` header for requests to `audienceOrigin`. */
  headersFor(audienceOrigin: string): { Authorization: string };
}

/** Generates a new P-256 key pair for VAPID (base64url, unpadded). */
export function generateVapidKeys(): VapidKeyPair {
  const { publicKey, privateKey } = webpush.generateVAPIDKeys();
  return { publicKey, privateKey };
}

/**
 * Checks that both keys are well-formed base64url P-256 keys AND belong
 * together (the public key is derived from the private one): a mismatched
 * pair signs JWTs that every push service rejects with 401/403.
 */
export function validateVapidKeys(publicKey: string, privateKey: string): { ok: true } | { ok: false; reason: string } {
  const b64url = /^[A-Za-z0-9_-]+$/;
  if (!b64url.test(publicKey)) return { ok: false, reason: 'expected the VAPID public key as unpadded base64url' };
  if (!b64url.test(privateKey)) return { ok: false, reason: 'expected the VAPID private key as unpadded base64url' };
  const pub = Buffer.from(publicKey, 'base64url');
  const priv = Buffer.from(privateKey, 'base64url');
  if (pub.length !== 65 || pub[0] !== 0x04) {
    return { ok: false, reason: `expected the VAPID public key to be a 65-byte uncompressed P-256 point, got ${pub.length} bytes` };
  }
  if (priv.length !== 32) return { ok: false, reason: `expected the VAPID private key to be 32 bytes, got ${priv.length}` };
  let derived: Buffer;
  try {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(priv);
    derived = ecdh.getPublicKey();
  } catch {
    return { ok: false, reason: 'expected a valid P-256 private key, got a value outside the curve order' };
  }
  if (!derived.equals(pub)) return { ok: false, reason: 'expected the VAPID public key to match the private key, got a different key' };
  return { ok: true };
}

/** Throws unless `subject` is a `mailto:` address or an `https:` URL. */
export function validateVapidSubject(subject: string): void {
  let url: URL;
  try {
    url = new URL(subject);
  } catch {
    throw new Error(`VAPID subject: expected a mailto: or https: URL, got "${subject}"`);
  }
  if (url.protocol !== 'mailto:' && url.protocol !== 'https:') {
    throw new Error(`VAPID subject: expected a mailto: or https: URL, got ${url.protocol}`);
  }
}

/**
 * Creates the per-audience VAPID header cache. Validates keys and subject up
 * front (throws), so a bad configuration fails at start, not per message.
 */
export function createVapidHeaders(options: VapidOptions): VapidHeaders {
  const { publicKey, privateKey, subject } = options;
  const now = options.now ?? Date.now;
  const ttlSeconds = options.ttlSeconds ?? VAPID_MAX_TTL_SECONDS;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 60 || ttlSeconds > VAPID_MAX_TTL_SECONDS) {
    throw new Error(`VAPID ttlSeconds: expected an integer in 60…${VAPID_MAX_TTL_SECONDS}, got ${ttlSeconds}`);
  }
  const keys = validateVapidKeys(publicKey, privateKey);
  if (!keys.ok) throw new Error(keys.reason);
  validateVapidSubject(subject);
  const refreshMargin = Math.min(REFRESH_MARGIN_SECONDS, Math.floor(ttlSeconds / 4));
  const cache = new Map<string, { authorization: string; expiresAt: number }>();

  function headersFor(audienceOrigin: string): { Authorization: string } {
    const nowSeconds = Math.floor(now() / 1000);
    const hit = cache.get(audienceOrigin);
    if (hit !== undefined && hit.expiresAt - nowSeconds > refreshMargin) return { Authorization: hit.authorization };
    const expiresAt = nowSeconds + ttlSeconds;
    // Called through the module object (not destructured) so tests can count signatures.
    const { Authorization } = webpush.getVapidHeaders(audienceOrigin, subject, publicKey, privateKey, 'aes128gcm', expiresAt);
    if (cache.size >= MAX_CACHED_AUDIENCES && !cache.has(audienceOrigin)) cache.clear();
    cache.set(audienceOrigin, { authorization: Authorization, expiresAt });
    return { Authorization };
  }

  return { publicKey, headersFor };
}
