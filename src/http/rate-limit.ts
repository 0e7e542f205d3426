/**
 * Per-user rate limits (token buckets, in memory per instance): a client
 * that hammers claims or subscriptions gets 429 with Retry-After instead of
 * load on the database. Several instances each enforce their own budget.
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
  middleware(name: string): MiddlewareHandler<UserEnv>;
}

export function createRateLimiter(deps: { perMinute: number; burst?: number; registry: Registry; now?: () => number }): RateLimiter {
  const now = deps.now ?? Date.now;
  const capacity = deps.burst ?? Math.max(10, Math.ceil(deps.perMinute / 2));
  const refillPerMs = deps.perMinute / 60_000;
  const buckets = new Map<string, Bucket>();
  const limited = new Counter({
    name: 'mana_ai_rate_limited_total',
    help: 'Requests refused with 429, by limit',
    labelNames: ['limit'] as const,
    registers: [deps.registry],
  });

  function take(name: string, key: string): number {
    const id = `${name}\u0000${key}`;
    const t = now();
    const b = buckets.get(id) ?? { tokens: capacity, updatedAt: t };
    b.tokens = Math.min(capacity, b.tokens + (t - b.updatedAt) * refillPerMs);
    b.updatedAt = t;
    buckets.set(id, b);
    if (buckets.size > 100_000) {
      // Full buckets carry no information; drop them to bound memory.
      for (const [k, v] of buckets) if (v.tokens >= capacity) buckets.delete(k);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    limited.inc({ limit: name });
    return Math.ceil((1 - b.tokens) / refillPerMs);
  }

  return {
    take,
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
