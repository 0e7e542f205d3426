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
import { clientAddress, type TrustProxy } from './client-address.js';

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

export interface ServiceKeyThrottleOptions {
  serviceKey: string;
  /** /metrics' Bearer token, when set: a right one is never throttled either. */
  metricsToken?: string | undefined;
  /** Which X-Forwarded-For hops to believe (TRUST_PROXY); default: the socket's address. */
  trustProxy?: TrustProxy;
}

/**
 * Rate limits wrong credentials per client address wherever one is checked:
 * /internal/* (every request needs the service key), /health and /ready
 * (the service key unlocks details; a wrong one still gets the bare status,
 * which would otherwise be an unthrottled oracle) and /metrics (its Bearer
 * token). Each refusal takes a token of the address's bucket — a 401, or a
 * service key presented that does not match — and an address with none left
 * gets 429 for every wrong credential, before anything else is done with it.
 * A request presenting no credential outside /internal/* (a plain probe or
 * scrape) is never throttled.
 *
 * The right credential is checked first and always gets through: behind an
 * ingress without TRUST_PROXY every caller shares the proxy's address, and a
 * few dozen wrong keys from anyone would otherwise lock the operators out of
 * /internal/*, /ready's details and /metrics. A limited address is thus told
 * a right guess apart from a wrong one; what stops guessing is the key's own
 * length (a random secret), the limit keeps the noise down and counts it.
 * The address is the socket's, or with TRUST_PROXY the forwarded client's
 * (client-address.ts), never an X-Forwarded-For a caller wrote itself.
 */
export function throttleFailedServiceKeys(limiter: RateLimiter, opts: ServiceKeyThrottleOptions): MiddlewareHandler {
  const trust = opts.trustProxy ?? { kind: 'none' };
  return async function serviceKeyThrottle(c, next) {
    const key = c.req.header('x-service-key');
    const authorization = c.req.header('authorization');
    if (key === undefined && authorization === undefined && !c.req.path.startsWith('/internal/')) return next();
    const bearer = /^Bearer (.+)$/i.exec(authorization ?? '')?.[1];
    const right = (key !== undefined && serviceKeyMatches(opts.serviceKey, key)) || (opts.metricsToken !== undefined && serviceKeyMatches(opts.metricsToken, bearer));
    if (right) return next();
    let socket: string | undefined;
    try {
      socket = getConnInfo(c).remote.address;
    } catch {
      // Not served by @hono/node-server (app.request() in tests): one shared bucket.
    }
    const address = clientAddress(socket, c.req.header('x-forwarded-for'), trust);
    const waitMs = limiter.waitFor('service-key', address);
    if (waitMs > 0) {
      throw new AppError(429, 'rate_limited', `too many wrong service keys from this address; retry in ${Math.ceil(waitMs / 1000)} s`, {
        headers: { 'Retry-After': String(Math.ceil(waitMs / 1000)) },
      });
    }
    await next();
    if (c.res.status === 401 || key !== undefined) limiter.take('service-key', address);
  };
}
