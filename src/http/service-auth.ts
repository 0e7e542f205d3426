/**
 * X-Service-Key gate for /internal/*. Compared in constant time over SHA-256
 * digests, so neither the content nor the length of the key leaks through
 * response timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { AppError } from './errors.js';

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
