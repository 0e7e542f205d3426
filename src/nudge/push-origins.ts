/**
 * Per push-service origin: one keep-alive undici Pool, a bounded number of
 * requests in flight, and the request attempt itself; per allowlist entry:
 * a circuit breaker and the metric label. Pools idle for 5 min are closed
 * and at most MAX_POOLS are kept, so per-origin state is bounded by the
 * allowlist, not by the hosts users register.
 */
import type { LookupFunction } from 'node:net';
import { createSecureContext } from 'node:tls';
import { Pool } from 'undici';
import { createCircuitBreaker, type BreakerOptions, type CircuitBreaker } from './circuit-breaker.js';
import { postOnce, type PushResponse } from './push-request.js';
import type { PushMetrics } from './push-metrics.js';
import type { Allowlist } from '../devices/endpoint-guard.js';
import { createSemaphore, type Semaphore } from '../lib/semaphore.js';
import { labelOrigin } from './push-options.js';

const POOL_IDLE_MS = 5 * 60_000;
/** Pools kept at once; past it the least recently used idle one closes (a `*.pattern` entry has many hosts). */
const MAX_POOLS = 256;
const TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export interface OriginState {
  readonly origin: string;
  readonly pool: Pool;
  readonly breaker: CircuitBreaker;
  /** The duration histogram's child for this origin (label lookup once, not per request). */
  readonly observeSeconds: (seconds: number) => void;
  readonly slots: Semaphore;
  lastUsed: number;
}

export type Attempt =
  | (PushResponse & { type: 'response' })
  | { type: 'error'; reason: 'timeout' | 'network-error' | 'endpoint-refused'; detail: string };

export interface OriginsDeps {
  allowlist: Allowlist;
  concurrency: number;
  timeoutMs: number;
  breaker: BreakerOptions;
  metrics: PushMetrics;
  /** DNS lookup for pattern-matched hosts: only checked public addresses. */
  guardedLookup: LookupFunction;
  tlsCa?: string | Buffer;
  now: () => number;
}

export interface Origins {
  get(url: URL): OriginState;
  /** One POST within the origin's concurrency; never rejects. */
  attempt(s: OriginState, path: string, headers: Record<string, string>, body: Buffer): Promise<Attempt>;
  close(): Promise<void>;
}

export function createOrigins(deps: OriginsDeps): Origins {
  const { now, concurrency, timeoutMs } = deps;
  const origins = new Map<string, OriginState>();
  // One TLS context for every connection: tls.connect would otherwise build one (and parse `ca`) per socket.
  const secureContext = createSecureContext(deps.tlsCa === undefined ? {} : { ca: deps.tlsCa });
  let lastSweep = now();
  /** One breaker per allowlist entry: per-origin state must not grow with the hosts users name. */
  const breakers = new Map<string, CircuitBreaker>();

  function breakerFor(entry: string): CircuitBreaker {
    let breaker = breakers.get(entry);
    if (breaker === undefined) breakers.set(entry, (breaker = createCircuitBreaker(deps.breaker, now)));
    return breaker;
  }

  function isIdle(s: OriginState): boolean {
    return s.slots.held() === 0 && s.slots.waiting() === 0;
  }

  function evictIdlePool(): void {
    let lru: OriginState | undefined;
    for (const s of origins.values()) if (isIdle(s) && (lru === undefined || s.lastUsed < lru.lastUsed)) lru = s;
    if (lru === undefined) return;
    origins.delete(lru.origin);
    lru.pool.close().catch(() => undefined);
  }

  function create(url: URL): OriginState {
    if (origins.size >= MAX_POOLS) evictIdlePool();
    const entry = labelOrigin(url.href, deps.allowlist);
    const exact = deps.allowlist.origins.has(url.origin);
    const pool = new Pool(url.origin, {
      connections: concurrency,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      // Backstops only (undici's timers are coarse, ~1 s); the per-attempt abort is the real bound.
      headersTimeout: timeoutMs + 1_000,
      bodyTimeout: timeoutMs + 1_000,
      connect: {
        timeout: timeoutMs,
        // Exact-origin entries are trusted as written; everything else connects only to checked public addresses.
        ...(exact ? {} : { lookup: deps.guardedLookup }),
        secureContext,
      },
    });
    const histogram = deps.metrics.duration.labels({ origin: entry });
    return {
      origin: url.origin,
      pool,
      breaker: breakerFor(entry),
      observeSeconds: (seconds) => histogram.observe(seconds),
      slots: createSemaphore(concurrency),
      lastUsed: now(),
    };
  }

  function sweepIdle(): void {
    const t = now();
    if (t - lastSweep < 60_000) return;
    lastSweep = t;
    for (const [origin, s] of origins) {
      if (isIdle(s) && t - s.lastUsed > POOL_IDLE_MS && s.breaker.state() === 'closed') {
        origins.delete(origin);
        s.pool.close().catch(() => undefined);
      }
    }
  }

  return {
    get(url) {
      sweepIdle();
      let state = origins.get(url.origin);
      if (state === undefined) {
        state = create(url);
        origins.set(url.origin, state);
      }
      state.lastUsed = now();
      return state;
    },
    async attempt(s, path, headers, body) {
      const release = await s.slots.acquire();
      const started = performance.now();
      try {
        const res = await postOnce(s.pool, path, headers, body, timeoutMs);
        if (res.type === 'response') return res;
        if (res.code === 'ETIMEDOUT' || TIMEOUT_CODES.has(res.code)) return { type: 'error', reason: 'timeout', detail: res.code === 'ETIMEDOUT' ? res.message : res.code };
        if (res.code === 'EPUSHREFUSED') return { type: 'error', reason: 'endpoint-refused', detail: res.message };
        return { type: 'error', reason: 'network-error', detail: res.code };
      } finally {
        s.observeSeconds((performance.now() - started) / 1000);
        release();
      }
    },
    async close() {
      const pools = [...origins.values()].map((s) => s.pool);
      origins.clear();
      await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
    },
  };
}
