/**
 * A consecutive-failure circuit breaker (closed → open → half-open), one per
 * push-service origin, so a push service that is down fails fast instead of
 * holding connections, retries and the caller's time.
 *
 * - closed: requests pass; `failureThreshold` consecutive failures open it.
 * - open: requests are refused until `cooldownMs` has passed.
 * - half-open: exactly one probe request passes; its success closes the
 *   breaker, its failure opens it for another cooldown.
 */

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. Default 5. */
  failureThreshold: number;
  /** How long an open breaker refuses before letting one probe through. Default 30 s. */
  cooldownMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = { failureThreshold: 5, cooldownMs: 30_000 };

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreaker {
  /**
   * Asks to send one request. `{ allowed: false }` carries how long until a
   * probe may pass. An allowed request MUST be followed by exactly one of
   * `success()`, `failure()` or `neutral()`.
   */
  acquire(): { allowed: true } | { allowed: false; retryAfterMs: number };
  /** The push service answered sensibly (2xx, 4xx). */
  success(): void;
  /** 5xx, timeout or network error. */
  failure(): void;
  /** The attempt says nothing about the service's health (e.g. 429, refused locally). */
  neutral(): void;
  state(): BreakerState;
  /** Milliseconds until an open breaker lets a probe through; 0 when not open. */
  openForMs(): number;
}

/** Creates a breaker; `now` is injectable for tests. */
export function createCircuitBreaker(options: BreakerOptions, now: () => number = Date.now): CircuitBreaker {
  let failures = 0;
  let openedAt = 0;
  let state: BreakerState = 'closed';
  let probeInFlight = false;

  function acquire(): { allowed: true } | { allowed: false; retryAfterMs: number } {
    if (state === 'closed') return { allowed: true };
    if (state === 'open') {
      const waited = now() - openedAt;
      if (waited < options.cooldownMs) return { allowed: false, retryAfterMs: options.cooldownMs - waited };
      state = 'half-open';
    }
    if (probeInFlight) return { allowed: false, retryAfterMs: Math.max(1, Math.floor(options.cooldownMs / 10)) };
    probeInFlight = true;
    return { allowed: true };
  }

  function success(): void {
    failures = 0;
    probeInFlight = false;
    state = 'closed';
  }

  function failure(): void {
    probeInFlight = false;
    failures += 1;
    if (state === 'half-open' || failures >= options.failureThreshold) {
      state = 'open';
      openedAt = now();
    }
  }

  function neutral(): void {
    // A half-open probe that said nothing lets the next request probe instead.
    probeInFlight = false;
  }

  function openForMs(): number {
    return state === 'open' ? Math.max(0, options.cooldownMs - (now() - openedAt)) : 0;
  }

  return { acquire, success, failure, neutral, state: () => state, openForMs };
}
