/**
 * Reconnect delays: exponential backoff with "full jitter" (a uniformly random
 * delay between 0 and the exponential cap), so a fleet of tabs that lost the
 * same server does not come back in lock-step.
 */

export interface BackoffOptions {
  /** Cap of the first retry's delay. */
  baseMs: number;
  /** Upper bound of any delay. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000 };

/** The exponential cap for the given 0-based attempt: min(maxMs, baseMs·2^attempt). */
export function backoffCeiling(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  const n = Math.max(0, Math.floor(attempt));
  // 2^n overflows to Infinity for large n, which Math.min then clamps.
  return Math.min(options.maxMs, options.baseMs * 2 ** n);
}

/**
 * Delay before reconnect attempt `attempt` (0-based): uniform in
 * [0, backoffCeiling(attempt)]. `random` is injectable for tests.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(r * backoffCeiling(attempt, options));
}
