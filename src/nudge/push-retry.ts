/**
 * When the Web Push sender tries again, and how long it waits first: the
 * only retry policy of the sender, so one shared backoff helper can replace
 * it in one place.
 */

export const RETRY_BASE_MS = 250;
export const RETRY_CAP_MS = 10_000;
/** A Retry-After longer than this is not waited out; the caller gets `retryAfterMs`. */
export const RETRY_AFTER_CAP_MS = 120_000;

/** `Retry-After` as delay-seconds or an HTTP date, in ms from `nowMs`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** Full-jitter exponential backoff before retry number `retry` (0-based). */
export function backoffMs(retry: number, random: () => number): number {
  return Math.floor(random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** retry));
}

/**
 * The wait before retrying a 429 or 5xx: the service's Retry-After when it
 * gave one within the cap, else backoff. `beyondCap` says a 429 asked for
 * longer than the cap (the sender gives up then, passing the wait on).
 */
export function retryWait(
  retryAfter: string | undefined,
  retry: number,
  clock: { now: () => number; random: () => number },
): { waitMs: number; retryAfterMs?: number; beyondCap: boolean } {
  const retryAfterMs = parseRetryAfter(retryAfter, clock.now());
  if (retryAfterMs === undefined) return { waitMs: backoffMs(retry, clock.random), beyondCap: false };
  if (retryAfterMs > RETRY_AFTER_CAP_MS) return { waitMs: backoffMs(retry, clock.random), retryAfterMs, beyondCap: true };
  return { waitMs: retryAfterMs, retryAfterMs, beyondCap: false };
}
