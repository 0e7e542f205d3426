/**
 * Per-user rate limits (token buckets, in memory per instance): a client
 * that hammers claims or subscriptions gets 429 with Retry-After instead of
 * load on the database. Several instances each enforce their own budget.
 *
 * O(1) per request at any number of users: buckets live in two generations
 * that rotate every full-refill period. A bucket left untouched for a whole
 * generation has refilled, so it carries no information and is dropped with
 * its generation, never found by a scan of all buckets.
 */
import type { MiddlewareHandler } from 'hono';
import { Counter, type Registry } from 'prom-client';
import { AppError } from './errors.js';
import type { UserEnv } from './user-gate.js';

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export interface RateLimiter {
  /** Takes one token for (name, key); returns ms to wait when none is left. */
  take(name: string, key: string): number;
  /**
   * Ms to wait before (name, key) has a token again, counted as a refusal;
   * 0 when it has one. Takes nothing: for limits that charge only failures.
   */
  waitFor(name: string, key: string): number;
  /** Buckets held (both generations): users active within the last two refill periods. */
  size(): number;
  middleware(name: string): MiddlewareHandler<UserEnv>;
}

export function createRateLimiter(deps: { perMinute: number; burst?: number; registry: Registry; now?: () => number }): RateLimiter {
  const now = deps.now ?? Date.now;
  const capacity = deps.burst ?? Math.max(10, Math.ceil(deps.perMinute / 2));
  const refillPerMs = deps.perMinute / 60_000;
  const generationMs = Math.ceil(capacity / refillPerMs);
  let current = new Map<string, Bucket>();
  let previous = new Map<string, Bucket>();
  let rotatedAt = now();
  const limited = new Counter({
    name: 'mana_ai_rate_limited_total',
    help: 'Requests refused with 429, by limit',
    labelNames: ['limit'] as const,
    registers: [deps.registry],
  });

  function rotate(t: number): void {
    if (t - rotatedAt < generationMs) return;
    // Two periods without a rotation: the older generation is stale too.
    previous = t - rotatedAt < 2 * generationMs ? current : new Map();
    current = new Map();
    rotatedAt = t;
  }

  /** The refilled bucket of (name, key), moved into the current generation. */
  function bucket(name: string, key: string, t: number): Bucket {
    rotate(t);
    const id = `${name}\u0000${key}`;
    let b = current.get(id);
    if (b === undefined) {
      b = previous.get(id) ?? { tokens: capacity, updatedAt: t };
      previous.delete(id);
      current.set(id, b);
    }
    b.tokens = Math.min(capacity, b.tokens + (t - b.updatedAt) * refillPerMs);
    b.updatedAt = t;
    return b;
  }

  const waitMs = (b: Bucket) => Math.ceil((1 - b.tokens) / refillPerMs);

  function take(name: string, key: string): number {
    const b = bucket(name, key, now());
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    limited.inc({ limit: name });
    return waitMs(b);
  }

  function waitFor(name: string, key: string): number {
    const b = bucket(name, key, now());
    if (b.tokens >= 1) return 0;
    limited.inc({ limit: name });
    return waitMs(b);
  }

  return {
    take,
    waitFor,
    size: () => current.size + previous.size,
    middleware(name) {
      return async function rateLimit(c, next) {
        const waitMs = take(name, c.get('userId'));
        if (waitMs > 0) {
          throw new AppError(429, 'rate_limited', `too many ${name} requests; retry in ${Math.ceil(waitMs / 1000)} s`, {
            headers: { 'Retry-After': String(Math.ceil(waitMs / 1000)) },
          });
        }
        await next();
      };
    },
  };
}
