/**
 * A socket lives as long as its token: a timer that fires when the token
 * expires (`exp`, epoch seconds, as verify() returns it), and the expiry as
 * the auth-ok and reauth-ok frames carry it.
 */

export interface TokenExpiry {
  /** When it expires (ISO) and the time left by this clock, for the frames; empty when the token has no usable exp. */
  frame: { expiresAt?: string; expiresInMs?: number };
  cancel(): void;
}

/** setTimeout holds at most 2^31-1 ms (24.8 days); a longer-lived token is checked again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Calls `onExpired` once `exp` has passed (at once if it has already). */
export function watchTokenExpiry(exp: unknown, onExpired: () => void, now: () => number = Date.now): TokenExpiry {
  // verify() requires a numeric exp; anything else never expires the socket.
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return { frame: {}, cancel: () => undefined };
  const at = exp * 1000;
  let timer: NodeJS.Timeout | undefined;
  const check = (): void => {
    const left = at - now();
    if (left <= 0) return onExpired();
    timer = setTimeout(check, Math.min(left, MAX_TIMER_MS));
    timer.unref();
  };
  const frame = { expiresAt: new Date(at).toISOString(), expiresInMs: Math.max(0, Math.round(at - now())) };
  check();
  return { frame, cancel: () => clearTimeout(timer) };
}
