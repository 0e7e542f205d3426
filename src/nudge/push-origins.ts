/**
 * Per push-service origin: one keep-alive undici Pool, a circuit breaker, a
 * bounded number of requests in flight, and the request attempt itself.
 * Pools idle for 5 min are closed, so the map stays small.
 */
import type { LookupFunction } from 'node:net';
import { createSecureContext } from 'node:tls';
import { Pool } from 'undici';
import { createCircuitBreaker, type BreakerOptions, type CircuitBreaker } from './circuit-breaker.js';
import { postOnce, type PushResponse } from './push-request.js';
import type { PushMetrics } from './push-metrics.js';
import type { Allowlist } from '../devices/endpoint-guard.js';

const POOL_IDLE_MS = 5 * 60_000;
const TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export interface OriginState {
  readonly origin: string;
  readonly pool: Pool;
  readonly breaker: CircuitBreaker;
  /** The duration histogram's child for this origin (label lookup once, not per request). */
  readonly observeSeconds: (seconds: number) => void;
  active: number;
  readonly waiters: (() => void)[];
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

  function create(url: URL): OriginState {
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
    const histogram = deps.metrics.duration.labels({ origin: url.origin });
    return {
      origin: url.origin,
      pool,
      breaker: createCircuitBreaker(deps.breaker, now),
      observeSeconds: (seconds) => histogram.observe(seconds),
      active: 0,
      waiters: [],
      lastUsed: now(),
    };
  }

  function sweepIdle(): void {
    const t = now();
    if (t - lastSweep < 60_000) return;
    lastSweep = t;
    for (const [origin, s] of origins) {
      if (s.active === 0 && s.waiters.length === 0 && t - s.lastUsed > POOL_IDLE_MS && s.breaker.state() === 'closed') {
        origins.delete(origin);
        s.pool.close().catch(() => undefined);
      }
    }
  }

  async function acquireSlot(s: OriginState): Promise<void> {
    if (s.active < concurrency) {
      s.active += 1;
      return;
    }
    await new Promise<void>((resolveSlot) => s.waiters.push(resolveSlot));
  }

  function releaseSlot(s: OriginState): void {
    const next = s.waiters.shift();
    if (next !== undefined) next();
    else s.active -= 1;
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
      await acquireSlot(s);
      const started = performance.now();
      try {
        const res = await postOnce(s.pool, path, headers, body, timeoutMs);
        if (res.type === 'response') return res;
        if (res.code === 'ETIMEDOUT' || TIMEOUT_CODES.has(res.code)) return { type: 'error', reason: 'timeout', detail: res.code === 'ETIMEDOUT' ? res.message : res.code };
        if (res.code === 'EPUSHREFUSED') return { type: 'error', reason: 'endpoint-refused', detail: res.message };
        return { type: 'error', reason: 'network-error', detail: res.code };
      } finally {
        s.observeSeconds((performance.now() - started) / 1000);
        releaseSlot(s);
      }
    },
    async close() {
      const pools = [...origins.values()].map((s) => s.pool);
      origins.clear();
      await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
    },
  };
}
