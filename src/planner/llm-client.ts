/**
 * Client for mana-llm's OpenAI-compatible chat endpoint (docs/contract.md §4).
 * mana-llm can be slow, rate-limit or fail, so every call runs under a global
 * concurrency limit, a per-attempt timeout and bounded retries with jittered
 * backoff. The service key and the messages are never logged: prompts carry
 * the user's own notes and tasks.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Counter, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { createSemaphore } from '../lib/semaphore.js';
import { backoffDelayMs, parseRetryAfter, type BackoffPolicy } from '../lib/retry.js';
import { request } from 'undici';
import { BodyTooLargeError, readBoundedStream } from '../lib/bounded-body.js';
import { readUsage, type TokenUsage } from '../agents/bounds.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export type LlmErrorKind = 'timeout' | 'rate-limited' | 'server' | 'client' | 'network' | 'bad-reply';

/** Values of the `outcome` label on the client's metrics. */
export type LlmOutcome =
  | 'ok'
  | 'timeout'
  | 'rate_limited'
  | 'server_error'
  | 'client_error'
  | 'network'
  | 'bad_reply'
  | 'aborted';

/** The last attempt's failure, after retries (if any) were used up. */
export class LlmError extends Error {
  override readonly name = 'LlmError';
  readonly kind: LlmErrorKind;
  readonly status?: number;
  /** Whether a later call may succeed (the kinds this client itself retries). */
  readonly retryable: boolean;
  readonly attempts: number;

  constructor(
    message: string,
    init: { kind: LlmErrorKind; status?: number; retryable: boolean; attempts: number; cause?: unknown },
  ) {
    super(message, { cause: init.cause });
    this.kind = init.kind;
    if (init.status !== undefined) this.status = init.status;
    this.retryable = init.retryable;
    this.attempts = init.attempts;
  }
}

export interface LlmClientDeps {
  /** Base URL of mana-llm (`MANA_LLM_URL`), without `/v1/…`. */
  url: string;
  serviceKey: string;
  model: string;
  /** Per attempt, including reading the reply body. */
  timeoutMs: number;
  /** Most HTTP requests in flight at once, across all callers of this client. */
  concurrency: number;
  /** Retries after the first attempt (0 = try once). */
  maxRetries: number;
  /** Largest reply read (default 1 MiB); a larger one is a failed attempt. */
  maxResponseBytes?: number;
  registry: Registry;
  log: Logger;
  /** Backoff waits go through this; tests inject a recorder. */
  sleep?: (ms: number) => Promise<void>;
  /** Jitter source in [0, 1). */
  random?: () => number;
  /** Clock for HTTP-date `Retry-After` values. */
  now?: () => number;
}

export interface LlmCompletion {
  content: string;
  attempts: number;
  /** The reply's token counts (`usage`), when it reported any. */
  usage?: TokenUsage;
}

export interface LlmClient {
  /**
   * Sends one chat completion, retrying transient failures.
   * @throws LlmError when the last attempt failed; the signal's reason when
   *   the caller aborted.
   */
  complete(messages: readonly ChatMessage[], opts?: { signal?: AbortSignal }): Promise<LlmCompletion>;
  /** HTTP requests currently in flight. */
  inFlight(): number;
}

/** Retry waits: 0.5 s, 1 s, 2 s … up to 30 s, fully jittered. */
export const LLM_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 30_000 };
/** A longer Retry-After is cut to this, so a hostile or buggy value cannot park a planner for hours. */
export const RETRY_AFTER_CAP_MS = 60_000;
const TEMPERATURE = 0.2;
/** A chat completion of a few steps is a few KiB; 1 MiB leaves room without letting a reply exhaust memory. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

interface Failure {
  kind: LlmErrorKind;
  status?: number;
  retryAfterMs?: number;
  detail: string;
  cause?: unknown;
}

type AttemptResult = { ok: true; content: string; usage?: TokenUsage } | { ok: false; failure: Failure };

const RETRYABLE: ReadonlySet<LlmErrorKind> = new Set(['timeout', 'rate-limited', 'server', 'network']);

const OUTCOME: Record<LlmErrorKind, LlmOutcome> = {
  timeout: 'timeout',
  'rate-limited': 'rate_limited',
  server: 'server_error',
  client: 'client_error',
  network: 'network',
  'bad-reply': 'bad_reply',
};

/** Creates a client; metrics go on `deps.registry`, so each registry gets its own. */
export function createLlmClient(deps: LlmClientDeps): LlmClient {
  assertDeps(deps);
  const endpoint = `${deps.url.replace(/\/+$/, '')}/v1/chat/completions`;
  const random = deps.random ?? Math.random;
  const now = deps.now ?? Date.now;
  const log = deps.log.child({ component: 'llm-client' });
  const slots = createSemaphore(deps.concurrency);
  const metrics = llmMetrics(deps.registry);

  async function attemptOnce(messages: readonly ChatMessage[], signal: AbortSignal | undefined): Promise<AttemptResult> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`timed out after ${deps.timeoutMs} ms`));
    }, deps.timeoutMs);
    const onCallerAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onCallerAbort, { once: true });
    const stopTimer = metrics.duration.startTimer();
    let outcome: LlmOutcome = 'aborted';
    try {
      const result = await send(messages, controller.signal);
      outcome = result.ok ? 'ok' : OUTCOME[result.failure.kind];
      return result;
    } catch (e: unknown) {
      if (signal?.aborted) throw signal.reason;
      const kind: LlmErrorKind = timedOut ? 'timeout' : 'network';
      outcome = OUTCOME[kind];
      return { ok: false, failure: { kind, detail: timedOut ? `no reply within ${deps.timeoutMs} ms` : 'request failed', cause: e } };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onCallerAbort);
      stopTimer({ outcome });
      metrics.requests.inc({ outcome });
    }
  }

  async function send(messages: readonly ChatMessage[], signal: AbortSignal): Promise<AttemptResult> {
    // undici's request rather than fetch: a chat completion needs none of fetch's WHATWG
    // machinery (Request, Headers, web streams), which cost about 0.4 ms of CPU per call.
    // It follows no redirects (one could carry the bearer token to another origin): a 3xx is an error.
    const res = await request(endpoint, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${deps.serviceKey}`,
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify({ model: deps.model, temperature: TEMPERATURE, messages }),
      signal,
    });
    const status = res.statusCode;
    if (status < 200 || status >= 300) {
      // Free the connection; the error body is not logged (it may echo the prompt).
      await res.body.dump().catch(() => undefined);
      const retryAfter = parseRetryAfter(res.headers['retry-after'], now(), RETRY_AFTER_CAP_MS);
      const withRetryAfter = retryAfter === undefined ? {} : { retryAfterMs: retryAfter };
      if (status === 429) return { ok: false, failure: { kind: 'rate-limited', status, detail: 'rate-limited', ...withRetryAfter } };
      if (status >= 500) return { ok: false, failure: { kind: 'server', status, detail: 'server error', ...withRetryAfter } };
      return { ok: false, failure: { kind: 'client', status, detail: 'request refused' } };
    }
    let text: string;
    try {
      text = await readBoundedStream(res.body, res.headers['content-length'], deps.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES);
    } catch (e: unknown) {
      if (!(e instanceof BodyTooLargeError)) throw e;
      return { ok: false, failure: { kind: 'bad-reply', status, detail: e.message } };
    }
    const reply = contentOf(text);
    if ('problem' in reply) {
      return { ok: false, failure: { kind: 'bad-reply', status, detail: reply.problem } };
    }
    return { ok: true, ...reply };
  }

  async function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (deps.sleep) {
      await raceAbort(deps.sleep(ms), signal);
      return;
    }
    try {
      await delay(ms, undefined, signal ? { signal } : {});
    } catch (e: unknown) {
      if (signal?.aborted) throw signal.reason;
      throw e;
    }
  }

  async function complete(messages: readonly ChatMessage[], opts: { signal?: AbortSignal } = {}): Promise<LlmCompletion> {
    const { signal } = opts;
    for (let attempt = 1; ; attempt++) {
      const release = await slots.acquire(signal);
      let result: AttemptResult;
      try {
        result = await attemptOnce(messages, signal);
      } finally {
        // The slot is held only while a request is in flight, not during
        // backoff, so one struggling call does not block the others.
        release();
      }
      if (result.ok) {
        log.debug({ attempts: attempt }, 'llm completion ok');
        return { content: result.content, attempts: attempt, ...(result.usage ? { usage: result.usage } : {}) };
      }
      const { failure } = result;
      const retryable = RETRYABLE.has(failure.kind);
      const fields = { attempt, kind: failure.kind, status: failure.status, err: failure.cause };
      if (!retryable || attempt > deps.maxRetries) {
        log.warn(fields, 'llm request failed');
        const status = failure.status === undefined ? '' : ` (HTTP ${failure.status})`;
        throw new LlmError(`mana-llm ${failure.kind}${status}: ${failure.detail}, after ${attempt} attempt(s)`, {
          kind: failure.kind,
          ...(failure.status === undefined ? {} : { status: failure.status }),
          retryable,
          attempts: attempt,
          cause: failure.cause,
        });
      }
      const delayMs = failure.retryAfterMs ?? backoffDelayMs(attempt, LLM_BACKOFF, random);
      log.warn({ ...fields, delayMs }, 'llm attempt failed, retrying');
      await wait(delayMs, signal);
    }
  }

  return {
    complete,
    inFlight: function inFlight() {
      return slots.held();
    },
  };
}

/** The plan text of a reply, and the tokens it says it cost (agents' budgets count them). */
function contentOf(text: string): { content: string; usage?: TokenUsage } | { problem: string } {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { problem: 'reply is not JSON' };
  }
  const choices = (body as { choices?: unknown } | null)?.choices;
  const first: unknown = Array.isArray(choices) ? choices[0] : undefined;
  const content = (first as { message?: { content?: unknown } } | undefined)?.message?.content;
  if (typeof content !== 'string') return { problem: 'reply has no choices[0].message.content string' };
  const usage = readUsage((body as { usage?: unknown }).usage);
  return usage ? { content, usage } : { content };
}

async function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) throw signal.reason;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

function assertDeps(deps: LlmClientDeps): void {
  if (!Number.isInteger(deps.concurrency) || deps.concurrency < 1) throw new RangeError('concurrency must be an integer >= 1');
  if (!Number.isInteger(deps.maxRetries) || deps.maxRetries < 0) throw new RangeError('maxRetries must be an integer >= 0');
  if (!(deps.timeoutMs > 0)) throw new RangeError('timeoutMs must be > 0');
  if (!/^https?:\/\//.test(deps.url)) throw new RangeError('url must be an http(s) URL');
}

interface LlmMetrics {
  duration: Histogram<'outcome'>;
  requests: Counter<'outcome'>;
}

/** One set per registry: a second client on the same registry shares it instead of failing to register. */
function llmMetrics(registry: Registry): LlmMetrics {
  const durationName = 'mana_ai_llm_request_duration_seconds';
  const requestsName = 'mana_ai_llm_requests_total';
  const duration =
    (registry.getSingleMetric(durationName) as Histogram<'outcome'> | undefined) ??
    new Histogram({
      name: durationName,
      help: 'Duration of HTTP requests to mana-llm (one per attempt)',
      labelNames: ['outcome'],
      // mana-llm takes seconds to minutes.
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300],
      registers: [registry],
    });
  const requests =
    (registry.getSingleMetric(requestsName) as Counter<'outcome'> | undefined) ??
    new Counter({
      name: requestsName,
      help: 'HTTP requests to mana-llm (one per attempt), by outcome',
      labelNames: ['outcome'],
      registers: [registry],
    });
  return { duration, requests };
}
