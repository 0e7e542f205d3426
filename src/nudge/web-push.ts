/**
 * Web Push sender (RFC 8030/8291/8292). `web-push` does the aes128gcm payload
 * encryption; the VAPID JWT comes from our per-audience cache; the request is
 * ours, over one keep-alive undici Pool per push-service origin
 * (push-origins.ts). When to retry and how long to wait is push-retry.ts.
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
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { checkPushEndpoint, createCachingResolver, createGuardedLookup, resolveAll, type Allowlist, type Resolve } from '../devices/endpoint-guard.js';
import { DEFAULT_BREAKER, type BreakerOptions } from './circuit-breaker.js';
import type { VapidHeaders } from './vapid.js';
import { createInlineEncryptor, createThreadedEncryptor, defaultEncryptThreads } from './web-push-encrypt.js';
import { invalidOptions, labelOrigin, MAX_PAYLOAD_BYTES, type PushOutcome, type PushSendOptions, type PushSubscriptionTarget } from './push-options.js';
import { outcomeLabel, pushMetrics } from './push-metrics.js';
import { createOrigins, type Attempt, type OriginState } from './push-origins.js';
import { backoffMs, retryWait } from './push-retry.js';

export * from './push-options.js';
export { PUSH_BACKOFF, RETRY_AFTER_CAP_MS } from './push-retry.js';

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

type Failure = PushOutcome & { kind: 'failed' };
/** What one attempt means: a final outcome, or a failure worth another try after waitMs. */
type Verdict = { done: PushOutcome } | { failure: Failure; waitMs: number };

/** Creates the sender. See {@link PushSenderDeps} for defaults. */
export function createPushSender(deps: PushSenderDeps): PushSender {
  const log = deps.log.child({ component: 'web-push' });
  const maxRetries = deps.maxRetries ?? 3;
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const lifetime = new AbortController();
  const sleep = deps.sleep ?? ((ms: number) => delay(ms, undefined, { signal: lifetime.signal }).catch(() => undefined));
  const resolve = createCachingResolver(deps.resolve ?? resolveAll, { now });
  const metrics = pushMetrics(deps.registry);
  const threads = deps.encryptThreads ?? defaultEncryptThreads();
  const encryptor = threads > 0 ? createThreadedEncryptor({ threads }) : createInlineEncryptor();
  const origins = createOrigins({
    allowlist: deps.allowlist,
    concurrency: deps.concurrencyPerOrigin ?? 64,
    timeoutMs: deps.timeoutMs ?? 10_000,
    breaker: deps.breaker ?? DEFAULT_BREAKER,
    metrics,
    guardedLookup: createGuardedLookup(resolve),
    ...(deps.tlsCa === undefined ? {} : { tlsCa: deps.tlsCa }),
    now,
  });
  let closed = false;

  function finish(origin: string, outcome: PushOutcome): PushOutcome {
    metrics.sends.inc({ origin, outcome: outcomeLabel(outcome) });
    return outcome;
  }

  /** Reads one attempt's result, telling the breaker what it saw. */
  function judge(s: OriginState, result: Attempt, tries: number, ctx: { path: string; bodyBytes: number }): Verdict {
    const { origin } = s;
    const attempts = tries + 1;
    if (result.type === 'error') {
      if (result.reason === 'endpoint-refused') {
        s.breaker.neutral();
        log.warn({ origin, reason: result.detail }, 'push endpoint refused at connect');
        return { done: { kind: 'failed', reason: 'endpoint-refused', retryable: false, detail: result.detail, attempts } };
      }
      s.breaker.failure();
      return { failure: { kind: 'failed', reason: result.reason, retryable: true, detail: result.detail, attempts }, waitMs: backoffMs(tries, random) };
    }
    const { status } = result;
    if (status >= 200 && status < 300) {
      s.breaker.success();
      log.debug({ origin, status, attempts }, 'push delivered');
      return { done: { kind: 'delivered', status, attempts } };
    }
    if (status === 404 || status === 410) {
      s.breaker.success();
      log.info({ origin, status }, 'push subscription gone');
      return { done: { kind: 'gone', status, attempts } };
    }
    if (status === 429) {
      s.breaker.neutral();
      const wait = retryWait(result.retryAfter, tries, { now, random });
      const failure: Failure = { kind: 'failed', reason: 'rate-limited', retryable: true, attempts, ...(wait.retryAfterMs === undefined ? {} : { retryAfterMs: wait.retryAfterMs }) };
      if (wait.beyondCap) {
        log.warn({ origin, retryAfterMs: wait.retryAfterMs }, 'push rate-limited beyond the wait cap');
        return { done: failure };
      }
      return { failure, waitMs: wait.waitMs };
    }
    if (status >= 500) {
      s.breaker.failure();
      const wait = retryWait(result.retryAfter, tries, { now, random });
      return { failure: { kind: 'failed', reason: 'server-error', retryable: true, detail: `HTTP ${status}`, attempts }, waitMs: wait.waitMs };
    }
    // 3xx (never followed: the Location is as untrusted as the endpoint), 413 and other 4xx: our request is wrong.
    s.breaker.success();
    const reason = status < 400 ? `redirect ${status} not followed` : `HTTP ${status}${result.text === '' ? '' : `: ${scrub(result.text, ctx.path)}`}`;
    if (status === 413) log.error({ origin, status, bytes: ctx.bodyBytes }, 'push service refused the payload as too large (bug)');
    else log.warn({ origin, status, reason }, 'push rejected');
    return { done: { kind: 'rejected', status, reason, attempts } };
  }

  /** Encrypts and checks; a PushOutcome when the message cannot be sent at all. */
  async function prepare(sub: PushSubscriptionTarget, payload: unknown, opts: PushSendOptions): Promise<{ url: URL; body: Buffer } | PushOutcome> {
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
    // Metrics name the allowlist entry, so their label set is bounded by the configuration.
    const origin = labelOrigin(check.url.href, deps.allowlist);
    const json = JSON.stringify(payload) as string | undefined;
    if (json === undefined) {
      log.error({ origin }, 'push payload is not JSON-serialisable (bug)');
      return finish(origin, { kind: 'failed', reason: 'invalid-request', retryable: false, detail: 'payload is not JSON', attempts: 0 });
    }
    if (Buffer.byteLength(json) > MAX_PAYLOAD_BYTES) {
      log.error({ origin, bytes: Buffer.byteLength(json) }, 'push payload too large (bug)');
      return finish(origin, { kind: 'failed', reason: 'payload-too-large', retryable: false, attempts: 0 });
    }
    try {
      return { url: check.url, body: await encryptor.encrypt(sub.keys.p256dh, sub.keys.auth, json) };
    } catch (e: unknown) {
      if (closed) return finish(origin, { kind: 'failed', reason: 'sender-closed', retryable: false, attempts: 0 });
      const detail = e instanceof Error ? e.message : 'encryption failed';
      log.warn({ origin, detail }, 'push subscription keys unusable');
      return finish(origin, { kind: 'failed', reason: 'invalid-subscription', retryable: false, detail, attempts: 0 });
    }
  }

  async function send(sub: PushSubscriptionTarget, payload: unknown, opts: PushSendOptions): Promise<PushOutcome> {
    if (closed) return { kind: 'failed', reason: 'sender-closed', retryable: false, attempts: 0 };
    const ready = await prepare(sub, payload, opts);
    if ('kind' in ready) return ready;
    const { url, body } = ready;
    const origin = url.origin;
    // Metrics name the allowlist entry, so their label set is bounded by the configuration.
    const label = labelOrigin(url.href, deps.allowlist);
    const headers: Record<string, string> = {
      'content-encoding': 'aes128gcm',
      'content-type': 'application/octet-stream',
      ttl: String(opts.ttlSeconds),
      urgency: opts.urgency ?? 'high',
      authorization: deps.vapid.headersFor(origin).Authorization,
    };
    if (opts.topic !== undefined) headers.topic = opts.topic;
    const path = url.pathname + url.search;
    const s = origins.get(url);

    for (let tries = 0; ; tries++) {
      if (closed) return finish(label, { kind: 'failed', reason: 'sender-closed', retryable: false, attempts: tries });
      const gate = s.breaker.acquire();
      if (!gate.allowed) {
        // Debug only: a burst to a dead service would log once per message; the opening is logged at warn.
        log.debug({ origin, retryAfterMs: gate.retryAfterMs }, 'push circuit open');
        return finish(label, { kind: 'failed', reason: 'circuit-open', retryable: true, retryAfterMs: gate.retryAfterMs, attempts: tries });
      }
      const verdict = judge(s, await origins.attempt(s, path, headers, body), tries, { path, bodyBytes: body.length });
      if ('done' in verdict) return finish(label, verdict.done);
      let failure = verdict.failure;
      // This origin's breaker just opened: retrying would only be refused after the wait.
      const openForMs = s.breaker.openForMs();
      if (openForMs > 0) {
        log.warn({ origin, reason: failure.reason, openForMs }, 'push circuit opened');
        failure = { ...failure, retryAfterMs: Math.max(failure.retryAfterMs ?? 0, openForMs) };
      }
      if (tries >= maxRetries || openForMs > 0) {
        log.warn({ origin, reason: failure.reason, detail: failure.detail, attempts: failure.attempts }, 'push failed after retries');
        return finish(label, failure);
      }
      metrics.sends.inc({ origin: label, outcome: 'retry' });
      log.debug({ origin, reason: failure.reason, waitMs: verdict.waitMs, attempt: failure.attempts }, 'push retry');
      await sleep(verdict.waitMs);
    }
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    lifetime.abort();
    await Promise.all([origins.close(), encryptor.close()]);
  }

  return { send, close };
}

/** Push services sometimes echo the request path; it is a secret. */
function scrub(text: string, path: string): string {
  return path.length > 1 ? text.split(path).join('<endpoint-path>') : text;
}
