/**
 * When the Web Push sender tries again, and how long it waits first. The
 * arithmetic (backoff, Retry-After) is the shared src/lib/retry.ts; this
 * file only holds the sender's policy: its numbers and what a 429 beyond
 * the cap means.
 */
import { backoffDelayMs, parseRetryAfter, type BackoffPolicy } from '../lib/retry.js';

/** Retry waits: 250 ms, 500 ms … up to 10 s, fully jittered. */
export const PUSH_BACKOFF: BackoffPolicy = { baseMs: 250, capMs: 10_000 };
/** A Retry-After longer than this is not waited out; the caller gets `retryAfterMs`. */
export const RETRY_AFTER_CAP_MS = 120_000;

/** Full-jitter exponential backoff before retry number `retry` (0-based). */
export function backoffMs(retry: number, random: () => number): number {
  return backoffDelayMs(retry + 1, PUSH_BACKOFF, random);
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
