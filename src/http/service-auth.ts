/**
 * X-Service-Key gate for /internal/*. Compared in constant time over SHA-256
 * digests, so neither the content nor the length of the key leaks through
 * response timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';
import { AppError } from './errors.js';
import type { RateLimiter } from './rate-limit.js';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export function serviceKeyMatches(expected: string, given: string | undefined): boolean {
  return timingSafeEqual(digest(expected), digest(given ?? '')) && given !== undefined;
}

export function requireServiceKey(expected: string): MiddlewareHandler {
  return async function serviceKeyGate(c, next) {
    if (!serviceKeyMatches(expected, c.req.header('x-service-key'))) {
      throw new AppError(401, 'service_key_required', 'expected a valid X-Service-Key header');
    }
    await next();
  };
}

/**
 * Rate limits wrong credentials per client address wherever one is checked:
 * /internal/* (every request needs the service key), /health and /ready
 * (the service key unlocks details; a wrong one still gets the bare status,
 * which would otherwise be an unthrottled oracle) and /metrics (its Bearer
 * token). Each refusal takes a token of the address's bucket — a 401, or a
 * service key presented that does not match — and an address with none left
 * gets 429 before its key is even compared, so guessing is as slow as the
 * limit whatever the guesses are. A request presenting no credential outside
 * /internal/* (a plain probe or scrape) is never throttled. The socket's
 * address, not X-Forwarded-For, which the guesser would write.
 */
export function throttleFailedServiceKeys(limiter: RateLimiter, expected: string): MiddlewareHandler {
  return async function serviceKeyThrottle(c, next) {
    const key = c.req.header('x-service-key');
    const presented = key !== undefined || c.req.header('authorization') !== undefined;
    if (!presented && !c.req.path.startsWith('/internal/')) return next();
    let address = 'unknown';
    try {
      address = getConnInfo(c).remote.address ?? 'unknown';
    } catch {
      // Not served by @hono/node-server (app.request() in tests): one shared bucket.
    }
    const waitMs = limiter.waitFor('service-key', address);
    if (waitMs > 0) {
      throw new AppError(429, 'rate_limited', `too many wrong service keys from this address; retry in ${Math.ceil(waitMs / 1000)} s`, {
        headers: { 'Retry-After': String(Math.ceil(waitMs / 1000)) },
      });
    }
    await next();
    if (c.res.status === 401 || (key !== undefined && !serviceKeyMatches(expected, key))) limiter.take('service-key', address);
  };
}
