/**
 * The one retry policy for calls to upstreams (mana-llm, push services):
 * exponential backoff with full jitter, and the upstream's own `Retry-After`
 * when it sends one. Callers decide what is retryable and what a too-long
 * Retry-After means for them; the arithmetic lives here once.
 */

export interface BackoffPolicy {
  /** Ceiling of the first retry's wait. */
  baseMs: number;
  /** No wait ceiling grows past this. */
  capMs: number;
}

/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"): spreads the retries of many callers that failed together.
 * @param retry 1 for the first retry.
 * @param random a source in [0, 1).
 */
export function backoffDelayMs(retry: number, policy: BackoffPolicy, random: () => number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceiling);
}

/**
 * A `Retry-After` header (delay-seconds or HTTP-date) in ms from `nowMs`,
 * at most `capMs`; `undefined` when absent or unreadable. A date in the past
 * is 0. Only a value that starts with a day name is read as a date: every
 * HTTP-date form does, and without the check Date.parse reads "-5" as a year.
 */
export function parseRetryAfter(header: string | readonly string[] | null | undefined, nowMs: number, capMs = Number.POSITIVE_INFINITY): number | undefined {
  const raw = typeof header === 'string' ? header : header?.[0];
  if (raw === undefined) return undefined;
  const value = raw.trim();
  if (/^\d+(\.\d+)?$/.test(value)) return Math.min(Number(value) * 1000, capMs);
  const at = /^[A-Za-z]{3}/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, at - nowMs), capMs);
}
