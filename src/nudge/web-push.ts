/**
 * Web Push sender (RFC 8030/8291/8292). `web-push` does the aes128gcm payload
 * encryption; the VAPID JWT comes from our per-audience cache; the request is
 * ours, over one keep-alive undici Pool per push-service origin.
 *
 * Why not `webpush.sendNotification`: it signs a JWT and opens a new TLS
 * connection per message, cannot talk to an `http:` test service, follows no
 * retry policy and has no per-origin isolation.
 *
 * Safety: every send re-checks the endpoint with the SSRF guard (DNS cached
 * 60 s); connections to pattern-matched hosts resolve through the guarded
 * lookup, so they only ever reach public addresses; redirects are never
 * followed. Logs and metrics name only the origin: the endpoint path is a
 * bearer secret and the keys are the user's.
 */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import { Pool } from 'undici';
import {
  allowlistEntryOf,
  checkPushEndpoint,
  createCachingResolver,
  createGuardedLookup,
  resolveAll,
  type Allowlist,
  type Resolve,
} from '../devices/endpoint-guard.js';
import { createCircuitBreaker, DEFAULT_BREAKER, type BreakerOptions, type CircuitBreaker } from './circuit-breaker.js';
import type { VapidHeaders } from './vapid.js';
import { postOnce, type PushResponse } from './push-request.js';
import { createInlineEncryptor, createThreadedEncryptor, defaultEncryptThreads } from './web-push-encrypt.js';
import { backoffDelayMs, parseRetryAfter, type BackoffPolicy } from '../lib/retry.js';
import { createSemaphore, type Semaphore } from '../lib/semaphore.js';

export type Urgency = 'very-low' | 'low' | 'normal' | 'high';

export interface PushSubscriptionTarget {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

export interface PushSendOptions {
  /** Seconds the push service may hold the message (the claim deadline). */
  ttlSeconds: number;
  /** ≤ 32 base64url characters; a newer message with the same topic replaces a stored one. */
  topic?: string;
  /** Default `high`: a due mission should wake the device now. */
  urgency?: Urgency;
}

export type PushFailureReason =
  | 'circuit-open'
  | 'endpoint-refused'
  | 'timeout'
  | 'network-error'
  | 'server-error'
  | 'rate-limited'
  | 'invalid-request'
  | 'invalid-subscription'
  | 'payload-too-large'
  | 'sender-closed';

/** `attempts` counts HTTP requests made (0 when none was). */
export type PushOutcome =
  | { kind: 'delivered'; status: number; attempts: number }
  | { kind: 'gone'; status: number; attempts: number }
  | { kind: 'rejected'; status: number; reason: string; attempts: number }
  | { kind: 'failed'; reason: PushFailureReason; retryable: boolean; retryAfterMs?: number; detail?: string; attempts: number };

export interface PushSender {
  /** Encrypts `payload` (JSON-serialised) for `sub` and delivers it. Never rejects. */
  send(sub: PushSubscriptionTarget, payload: unknown, opts: PushSendOptions): Promise<PushOutcome>;
  /** Stops new sends and closes every pool; safe to call twice. */
  close(): Promise<void>;
}

export interface PushSenderDeps {
  vapid: VapidHeaders;
  allowlist: Allowlist;
  /** DNS resolver for pattern-matched hosts; default: system resolver. Cached 60 s. */
  resolve?: Resolve;
  registry: Registry;
  log: Logger;
  /** Concurrent requests (and pooled connections) per push-service origin. Default 64. */
  concurrencyPerOrigin?: number;
  /** Per request attempt, from slot acquired to body read. Default 10 s. */
  timeoutMs?: number;
  /** Retries after the first attempt, for 5xx, 429, timeouts, network errors. Default 3. */
  maxRetries?: number;
  breaker?: BreakerOptions;
  /**
   * Worker threads for payload encryption; 0 encrypts on the event loop.
   * Default: cores − 1, between 1 and 4. In a burst the event loop also
   * encrypts once they are full (see createThreadedEncryptor).
   */
  encryptThreads?: number;
  /** Extra CA certificate(s) to trust (tests and benchmarks with a self-signed receiver). */
  tlsCa?: string | Buffer;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

/** aes128gcm with one 4096-byte record: 4096 − 16 (tag) − 1 (delimiter) − 86 (header). */
export const MAX_PAYLOAD_BYTES = 3993;
/** Retry waits: 250 ms, 500 ms … up to 10 s, fully jittered. */
export const PUSH_BACKOFF: BackoffPolicy = { baseMs: 250, capMs: 10_000 };
/** A Retry-After longer than this is not waited out; the caller gets `retryAfterMs`. */
export const RETRY_AFTER_CAP_MS = 120_000;
const MAX_TTL_SECONDS = 28 * 24 * 60 * 60;
const TOPIC = /^[A-Za-z0-9_-]{1,32}$/;
const URGENCIES: ReadonlySet<string> = new Set(['very-low', 'low', 'normal', 'high']);
const POOL_IDLE_MS = 5 * 60_000;
/** Pools kept at once; past it the least recently used idle one closes (a `*.pattern` entry has many hosts). */
const MAX_POOLS = 256;
const TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** A stable Topic for a mission: base64url(SHA-256(missionId)) cut to 32 characters. */
export function topicForMission(missionId: string): string {
  return createHash('sha256').update(missionId).digest('base64url').slice(0, 32);
}

/** True when `topic` is 1–32 characters of the base64url alphabet (RFC 8030 §5.4). */
export function isValidTopic(topic: string): boolean {
  return TOPIC.test(topic);
}

interface OriginState {
  readonly origin: string;
  readonly pool: Pool;
  readonly breaker: CircuitBreaker;
  /** The duration histogram's child for this origin (label lookup once, not per request). */
  readonly observeSeconds: (seconds: number) => void;
  readonly slots: Semaphore;
  lastUsed: number;
}

type Attempt =
  | (PushResponse & { type: 'response' })
  | { type: 'error'; reason: 'timeout' | 'network-error' | 'endpoint-refused'; detail: string };

/** Creates the sender. See {@link PushSenderDeps} for defaults. */
export function createPushSender(deps: PushSenderDeps): PushSender {
  const log = deps.log.child({ component: 'web-push' });
  const concurrency = deps.concurrencyPerOrigin ?? 64;
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const maxRetries = deps.maxRetries ?? 3;
  const breakerOptions = deps.breaker ?? DEFAULT_BREAKER;
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const lifetime = new AbortController();
  const sleep = deps.sleep ?? ((ms: number) => delay(ms, undefined, { signal: lifetime.signal }).catch(() => undefined));
  const resolve = createCachingResolver(deps.resolve ?? resolveAll, { now });
  const guardedLookup = createGuardedLookup(resolve);
  const metrics = pushMetrics(deps.registry);
  const threads = deps.encryptThreads ?? defaultEncryptThreads();
  const encryptor = threads > 0 ? createThreadedEncryptor({ threads }) : createInlineEncryptor();
  const origins = new Map<string, OriginState>();
  // One TLS context for every connection: tls.connect would otherwise build one (and parse `ca`) per socket.
  const secureContext = createSecureContext(deps.tlsCa === undefined ? {} : { ca: deps.tlsCa });
  let closed = false;
  let lastSweep = now();

  /** One breaker per allowlist entry: per-origin state must not grow with the hosts users name. */
  const breakers = new Map<string, CircuitBreaker>();
  function breakerFor(entry: string): CircuitBreaker {
    let breaker = breakers.get(entry);
    if (breaker === undefined) breakers.set(entry, (breaker = createCircuitBreaker(breakerOptions, now)));
    return breaker;
  }

  function evictIdlePool(): void {
    let lru: OriginState | undefined;
    for (const s of origins.values()) {
      if (s.slots.held() === 0 && s.slots.waiting() === 0 && (lru === undefined || s.lastUsed < lru.lastUsed)) lru = s;
    }
    if (lru === undefined) return;
    origins.delete(lru.origin);
    lru.pool.close().catch(() => undefined);
  }

  function originState(url: URL): OriginState {
    let state = origins.get(url.origin);
    if (state === undefined) {
      if (origins.size >= MAX_POOLS) evictIdlePool();
      const entry = labelOrigin(url.href, deps.allowlist);
      const exact = deps.allowlist.origins.has(url.origin);
      const pool = new Pool(url.origin, {
        connections: concurrency,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        // Backstops only (undici's timers are coarse, ~1 s); the per-attempt abort below is the real bound.
        headersTimeout: timeoutMs + 1_000,
        bodyTimeout: timeoutMs + 1_000,
        connect: {
          timeout: timeoutMs,
          // Exact-origin entries are trusted as written; everything else connects only to checked public addresses.
          ...(exact ? {} : { lookup: guardedLookup }),
          secureContext,
        },
      });
      const histogram = metrics.duration.labels({ origin: entry });
      state = {
        origin: url.origin,
        pool,
        breaker: breakerFor(entry),
        observeSeconds: (seconds) => histogram.observe(seconds),
        slots: createSemaphore(concurrency),
        lastUsed: now(),
      };
      origins.set(url.origin, state);
    }
    state.lastUsed = now();
    return state;
  }

  /** Closes pools idle for 5 min with a healthy breaker, so the map stays small. */
  function sweepIdlePools(): void {
    const t = now();
    if (t - lastSweep < 60_000) return;
    lastSweep = t;
    for (const [origin, s] of origins) {
      if (s.slots.held() === 0 && s.slots.waiting() === 0 && t - s.lastUsed > POOL_IDLE_MS && s.breaker.state() === 'closed') {
        origins.delete(origin);
        s.pool.close().catch(() => undefined);
      }
    }
  }

  async function attempt(s: OriginState, path: string, headers: Record<string, string>, body: Buffer): Promise<Attempt> {
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
  }

  function backoffMs(tries: number): number {
    return backoffDelayMs(tries + 1, PUSH_BACKOFF, random);
  }

  function finish(origin: string, outcome: PushOutcome): PushOutcome {
    const label =
      outcome.kind !== 'failed' ? outcome.kind
      : outcome.reason === 'circuit-open' ? 'circuit_open'
      : outcome.reason === 'endpoint-refused' ? 'refused'
      : 'failed';
    metrics.sends.inc({ origin, outcome: label });
    return outcome;
  }

  async function send(sub: PushSubscriptionTarget, payload: unknown, opts: PushSendOptions): Promise<PushOutcome> {
    if (closed) return { kind: 'failed', reason: 'sender-closed', retryable: false, attempts: 0 };
    sweepIdlePools();
    const invalid = invalidOptions(opts);
    if (invalid !== undefined) {
      log.error({ detail: invalid }, 'push send called with invalid options (bug)');
      return { kind: 'failed', reason: 'invalid-request', retryable: false, detail: invalid, attempts: 0 };
    }
    const check = await checkPushEndpoint(sub.endpoint, deps.allowlist, { resolve });
    if (!check.ok) {
      const origin = labelOrigin(sub.endpoint, deps.allowlist);
      log.warn({ origin, reason: check.reason }, 'push endpoint refused');
      return finish(origin, { kind: 'failed', reason: 'endpoint-refused', retryable: false, detail: check.reason, attempts: 0 });
    }
    const url = check.url;
    const origin = url.origin;
    // Metrics name the allowlist entry, so their label set is bounded by the configuration.
    const label = labelOrigin(url.href, deps.allowlist);
    const json = JSON.stringify(payload) as string | undefined;
    if (json === undefined) {
      log.error({ origin }, 'push payload is not JSON-serialisable (bug)');
      return finish(label, { kind: 'failed', reason: 'invalid-request', retryable: false, detail: 'payload is not JSON', attempts: 0 });
    }
    if (Buffer.byteLength(json) > MAX_PAYLOAD_BYTES) {
      log.error({ origin, bytes: Buffer.byteLength(json) }, 'push payload too large (bug)');
      return finish(label, { kind: 'failed', reason: 'payload-too-large', retryable: false, attempts: 0 });
    }
    let body: Buffer;
    try {
      body = await encryptor.encrypt(sub.keys.p256dh, sub.keys.auth, json);
    } catch (e: unknown) {
      if (closed) return finish(label, { kind: 'failed', reason: 'sender-closed', retryable: false, attempts: 0 });
      const detail = e instanceof Error ? e.message : 'encryption failed';
      log.warn({ origin, detail }, 'push subscription keys unusable');
      return finish(label, { kind: 'failed', reason: 'invalid-subscription', retryable: false, detail, attempts: 0 });
    }
    const headers: Record<string, string> = {
      'content-encoding': 'aes128gcm',
      'content-type': 'application/octet-stream',
      ttl: String(opts.ttlSeconds),
      urgency: opts.urgency ?? 'high',
      authorization: deps.vapid.headersFor(origin).Authorization,
    };
    if (opts.topic !== undefined) headers.topic = opts.topic;
    const path = url.pathname + url.search;
    const s = originState(url);

    for (let tries = 0; ; tries++) {
      if (closed) return finish(label, { kind: 'failed', reason: 'sender-closed', retryable: false, attempts: tries });
      const gate = s.breaker.acquire();
      if (!gate.allowed) {
        // Debug only: a burst to a dead service would log once per message; the opening is logged at warn.
        log.debug({ origin, retryAfterMs: gate.retryAfterMs }, 'push circuit open');
        return finish(label, { kind: 'failed', reason: 'circuit-open', retryable: true, retryAfterMs: gate.retryAfterMs, attempts: tries });
      }
      const result = await attempt(s, path, headers, body);
      const attempts = tries + 1;
      let waitMs: number;
      let failure: PushOutcome & { kind: 'failed' };

      if (result.type === 'error') {
        if (result.reason === 'endpoint-refused') {
          s.breaker.neutral();
          log.warn({ origin, reason: result.detail }, 'push endpoint refused at connect');
          return finish(label, { kind: 'failed', reason: 'endpoint-refused', retryable: false, detail: result.detail, attempts });
        }
        s.breaker.failure();
        failure = { kind: 'failed', reason: result.reason, retryable: true, detail: result.detail, attempts };
        waitMs = backoffMs(tries);
      } else {
        const { status } = result;
        if (status >= 200 && status < 300) {
          s.breaker.success();
          log.debug({ origin, status, attempts }, 'push delivered');
          return finish(label, { kind: 'delivered', status, attempts });
        }
        if (status === 404 || status === 410) {
          s.breaker.success();
          log.info({ origin, status }, 'push subscription gone');
          return finish(label, { kind: 'gone', status, attempts });
        }
        if (status === 429) {
          s.breaker.neutral();
          const retryAfterMs = parseRetryAfter(result.retryAfter, now());
          failure = { kind: 'failed', reason: 'rate-limited', retryable: true, attempts, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
          if (retryAfterMs !== undefined && retryAfterMs > RETRY_AFTER_CAP_MS) {
            log.warn({ origin, retryAfterMs }, 'push rate-limited beyond the wait cap');
            return finish(label, failure);
          }
          waitMs = retryAfterMs ?? backoffMs(tries);
        } else if (status >= 500) {
          s.breaker.failure();
          const retryAfterMs = parseRetryAfter(result.retryAfter, now());
          failure = { kind: 'failed', reason: 'server-error', retryable: true, detail: `HTTP ${status}`, attempts };
          waitMs = retryAfterMs !== undefined && retryAfterMs <= RETRY_AFTER_CAP_MS ? retryAfterMs : backoffMs(tries);
        } else {
          // 3xx (never followed: the Location is as untrusted as the endpoint), 413 and other 4xx: our request is wrong.
          s.breaker.success();
          const reason = status < 400 ? `redirect ${status} not followed` : `HTTP ${status}${result.text === '' ? '' : `: ${scrub(result.text, path)}`}`;
          if (status === 413) log.error({ origin, status, bytes: body.length }, 'push service refused the payload as too large (bug)');
          else log.warn({ origin, status, reason }, 'push rejected');
          return finish(label, { kind: 'rejected', status, reason, attempts });
        }
      }

      // This origin's breaker just opened: retrying would only be refused after the wait.
      const openForMs = s.breaker.openForMs();
      if (openForMs > 0) {
        log.warn({ origin, reason: failure.reason, openForMs }, 'push circuit opened');
        failure = { ...failure, retryAfterMs: Math.max(failure.retryAfterMs ?? 0, openForMs) };
      }
      if (tries >= maxRetries || openForMs > 0) {
        log.warn({ origin, reason: failure.reason, detail: failure.detail, attempts }, 'push failed after retries');
        return finish(label, failure);
      }
      metrics.sends.inc({ origin: label, outcome: 'retry' });
      log.debug({ origin, reason: failure.reason, waitMs, attempt: attempts }, 'push retry');
      await sleep(waitMs);
    }
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    lifetime.abort();
    const pools = [...origins.values()].map((s) => s.pool);
    origins.clear();
    await Promise.all([...pools.map((p) => p.close().catch(() => undefined)), encryptor.close()]);
  }

  return { send, close };
}

function invalidOptions(opts: PushSendOptions): string | undefined {
  if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 0 || opts.ttlSeconds > MAX_TTL_SECONDS) {
    return `expected ttlSeconds as an integer in 0…${MAX_TTL_SECONDS}, got ${opts.ttlSeconds}`;
  }
  if (opts.topic !== undefined && !isValidTopic(opts.topic)) {
    return 'expected topic as 1–32 base64url characters';
  }
  if (opts.urgency !== undefined && !URGENCIES.has(opts.urgency)) {
    return `expected urgency very-low|low|normal|high, got ${String(opts.urgency)}`;
  }
  return undefined;
}

/** The allowlist entry an endpoint matches, as a metric label; otherwise a fixed word (bounded cardinality). */
function labelOrigin(endpoint: string, allowlist: Allowlist): string {
  try {
    return allowlistEntryOf(new URL(endpoint), allowlist) ?? 'unlisted';
  } catch {
    return 'unlisted';
  }
}

/** Push services sometimes echo the request path; it is a secret. */
function scrub(text: string, path: string): string {
  return path.length > 1 ? text.split(path).join('<endpoint-path>') : text;
}

interface PushMetrics {
  sends: Counter<'origin' | 'outcome'>;
  duration: Histogram<'origin'>;
}

/** Registers the metrics once per registry (two senders on one registry share them). */
function pushMetrics(registry: Registry): PushMetrics {
  const sends =
    (registry.getSingleMetric('mana_ai_push_sends_total') as Counter<'origin' | 'outcome'> | undefined) ??
    new Counter({
      name: 'mana_ai_push_sends_total',
      help: 'Web Push sends by push-allowlist entry (`origin`) and outcome (delivered|gone|rejected|retry|failed|circuit_open|refused)',
      labelNames: ['origin', 'outcome'],
      registers: [registry],
    });
  const duration =
    (registry.getSingleMetric('mana_ai_push_send_duration_seconds') as Histogram<'origin'> | undefined) ??
    new Histogram({
      name: 'mana_ai_push_send_duration_seconds',
      help: 'Duration of one Web Push HTTP request attempt, by push-allowlist entry (`origin`)',
      labelNames: ['origin'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  return { sends, duration };
}
