/**
 * Retry, rate-limit, timeout, redirect, breaker and SSRF behaviour of the
 * sender, against small loopback receivers with scripted answers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseAllowlist, type Resolve } from '../../src/devices/endpoint-guard.js';
import { createVapidHeaders, generateVapidKeys } from '../../src/nudge/vapid.js';
import { createPushSender, type PushSenderDeps } from '../../src/nudge/web-push.js';
import { parseRetryAfter } from '../../src/lib/retry.js';
import { captureLog, counterValues, newRegistry, startReceiver, subscriptionKeys, type Receiver } from './web-push-helpers.js';

const vapidKeys = generateVapidKeys();
const keys = subscriptionKeys();
const payload = { type: 'mission-due', missionId: 'm1', iterationId: '6f1c1f0e-6a53-5d0e-9a3b-2f4f1f5b7a10', dueAt: '2025-11-25T09:00:00Z' };
const SECRET = 'Zk9x-secret-subscription-token';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function receiver(reply: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const rx = await startReceiver(reply);
  cleanups.push(() => rx.close());
  return rx;
}

function sender(origins: string[], extra: Partial<PushSenderDeps> = {}) {
  const registry = newRegistry();
  const { log, lines } = captureLog();
  const sleeps: number[] = [];
  const s = createPushSender({
    vapid: createVapidHeaders({ ...vapidKeys, subject: 'https://mana.example/contact' }),
    allowlist: parseAllowlist(origins.join(',')),
    registry,
    log,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    encryptThreads: 0, // these tests are about the network side; web-push.test.ts covers the threaded encryptor
    ...extra,
  });
  cleanups.push(() => s.close());
  return { s, registry, lines, sleeps };
}

const to = (rx: Receiver) => ({ endpoint: `${rx.origin}/push/${SECRET}`, keys });

describe('retries', () => {
  it('429 with Retry-After (seconds): waits that long, then delivers', async () => {
    const rx = await receiver((n, _req, res) => (n === 1 ? res.writeHead(429, { 'retry-after': '3' }).end() : res.writeHead(201).end()));
    const { s, sleeps, registry } = sender([rx.origin]);
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toEqual({ kind: 'delivered', status: 201, attempts: 2 });
    expect(sleeps).toEqual([3000]);
    expect(await counterValues(registry)).toEqual({ [`${rx.origin} retry`]: 1, [`${rx.origin} delivered`]: 1 });
  });

  it('429 with Retry-After as an HTTP date: waits until then', async () => {
    const now = Date.parse('2025-11-25T09:00:00Z');
    const rx = await receiver((n, _req, res) =>
      n === 1 ? res.writeHead(429, { 'retry-after': new Date(now + 7_000).toUTCString() }).end() : res.writeHead(202).end(),
    );
    const { s, sleeps } = sender([rx.origin], { now: () => now });
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toMatchObject({ kind: 'delivered', status: 202 });
    expect(sleeps).toEqual([7000]);
  });

  it('429 asking for longer than the cap: fails at once with retryAfterMs for the caller', async () => {
    const rx = await receiver((_n, _req, res) => res.writeHead(429, { 'retry-after': '600' }).end());
    const { s, sleeps } = sender([rx.origin]);
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toEqual({
      kind: 'failed',
      reason: 'rate-limited',
      retryable: true,
      retryAfterMs: 600_000,
      attempts: 1,
    });
    expect(sleeps).toEqual([]);
  });

  it('flaky 500, 500, 201: delivers after 2 retries with exponential full-jitter backoff', async () => {
    const rx = await receiver((n, _req, res) => res.writeHead(n <= 2 ? 500 : 201).end());
    const { s, sleeps, registry } = sender([rx.origin]);
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toEqual({ kind: 'delivered', status: 201, attempts: 3 });
    // random() = 0.5 → half of min(10 s, 250 ms · 2^n)
    expect(sleeps).toEqual([125, 250]);
    expect(await counterValues(registry)).toMatchObject({ [`${rx.origin} retry`]: 2, [`${rx.origin} delivered`]: 1 });
  });

  it('always 500: fails after maxRetries, the breaker opens, another origin keeps delivering', async () => {
    const bad = await receiver((_n, _req, res) => res.writeHead(503).end('down'));
    const good = await receiver((_n, _req, res) => res.writeHead(201).end());
    let t = 1_000_000;
    const { s, sleeps, registry, lines } = sender([bad.origin, good.origin], {
      maxRetries: 3,
      breaker: { failureThreshold: 4, cooldownMs: 30_000 },
      now: () => t,
    });
    expect(await s.send(to(bad), payload, { ttlSeconds: 60 })).toEqual({
      kind: 'failed',
      reason: 'server-error',
      retryable: true,
      detail: 'HTTP 503',
      attempts: 4,
      retryAfterMs: 30_000, // the breaker opened on the 4th failure
    });
    expect(bad.requests).toHaveLength(4);
    expect(sleeps).toEqual([125, 250, 500]);

    // Open: fails fast, no request reaches the failing service.
    expect(await s.send(to(bad), payload, { ttlSeconds: 60 })).toEqual({
      kind: 'failed',
      reason: 'circuit-open',
      retryable: true,
      retryAfterMs: 30_000,
      attempts: 0,
    });
    expect(bad.requests).toHaveLength(4);
    const goods = await Promise.all([1, 2, 3].map(() => s.send(to(good), payload, { ttlSeconds: 60 })));
    expect(goods.map((o) => o.kind)).toEqual(['delivered', 'delivered', 'delivered']);

    // After the cooldown one probe passes; its failure re-opens the breaker at once, without a retry.
    t += 30_000;
    expect(await s.send(to(bad), payload, { ttlSeconds: 60 })).toEqual({
      kind: 'failed',
      reason: 'server-error',
      retryable: true,
      detail: 'HTTP 503',
      attempts: 1,
      retryAfterMs: 30_000,
    });
    expect(bad.requests).toHaveLength(5);
    expect(await s.send(to(bad), payload, { ttlSeconds: 60 })).toMatchObject({ reason: 'circuit-open', attempts: 0 });

    expect(await counterValues(registry)).toEqual({
      [`${bad.origin} retry`]: 3,
      [`${bad.origin} failed`]: 2,
      [`${bad.origin} circuit_open`]: 2,
      [`${good.origin} delivered`]: 3,
    });
    expect(lines.join('')).not.toContain(SECRET);
  });

  it('a half-open probe that succeeds closes the breaker', async () => {
    let failing = true;
    const rx = await receiver((_n, _req, res) => res.writeHead(failing ? 500 : 201).end());
    let t = 0;
    const { s } = sender([rx.origin], { maxRetries: 0, breaker: { failureThreshold: 2, cooldownMs: 1_000 }, now: () => t });
    await s.send(to(rx), payload, { ttlSeconds: 60 });
    await s.send(to(rx), payload, { ttlSeconds: 60 });
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toMatchObject({ reason: 'circuit-open' });
    failing = false;
    t += 1_000;
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toMatchObject({ kind: 'delivered' });
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toMatchObject({ kind: 'delivered' });
  });

  it('a hanging push service: times out, retries, then fails', async () => {
    const rx = await receiver(() => {
      /* never answers */
    });
    const { s, sleeps, registry } = sender([rx.origin], { timeoutMs: 200, maxRetries: 1 });
    const started = Date.now();
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toEqual({
      kind: 'failed',
      reason: 'timeout',
      retryable: true,
      detail: 'no answer within 200 ms',
      attempts: 2,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(380);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(sleeps).toHaveLength(1);
    const hist = (await registry.getMetricsAsJSON()).find((m) => m.name === 'mana_ai_push_send_duration_seconds');
    const count = hist?.values.find((v) => (v as { metricName?: string }).metricName === 'mana_ai_push_send_duration_seconds_count');
    expect(count?.value).toBe(2);
  });

  it('a refused connection is a retryable network error', async () => {
    const rx = await receiver((_n, _req, res) => res.writeHead(201).end());
    const origin = rx.origin;
    await rx.close();
    cleanups.pop();
    const { s } = sender([origin], { maxRetries: 1 });
    expect(await s.send({ endpoint: `${origin}/push/${SECRET}`, keys }, payload, { ttlSeconds: 60 })).toMatchObject({
      kind: 'failed',
      reason: 'network-error',
      retryable: true,
      detail: 'ECONNREFUSED',
      attempts: 2,
    });
  });
});

describe('answers that are not retried', () => {
  it('a 3xx redirect is not followed', async () => {
    const elsewhere = await receiver((_n, _req, res) => res.writeHead(201).end());
    const rx = await receiver((_n, _req, res) => res.writeHead(307, { location: `${elsewhere.origin}/steal` }).end());
    const { s } = sender([rx.origin, elsewhere.origin]);
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toEqual({
      kind: 'rejected',
      status: 307,
      reason: 'redirect 307 not followed',
      attempts: 1,
    });
    expect(rx.requests).toHaveLength(1);
    expect(elsewhere.requests).toHaveLength(0);
  });

  it('413 is rejected and logged as a bug at error level', async () => {
    const rx = await receiver((_n, _req, res) => res.writeHead(413).end('too big'));
    const { s, lines } = sender([rx.origin]);
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toEqual({
      kind: 'rejected',
      status: 413,
      reason: 'HTTP 413: too big',
      attempts: 1,
    });
    const entry = lines.map((l) => JSON.parse(l) as { level: number; msg: string; origin?: string }).find((l) => l.level === 50);
    expect(entry).toMatchObject({ origin: rx.origin, msg: expect.stringContaining('too large') });
  });

  it('other 4xx are rejected with the service’s words, with the endpoint path scrubbed', async () => {
    const rx = await receiver((_n, req, res) => res.writeHead(403).end(`bad jwt for ${req.url}`));
    const { s, lines } = sender([rx.origin]);
    const outcome = await s.send(to(rx), payload, { ttlSeconds: 60 });
    expect(outcome).toEqual({ kind: 'rejected', status: 403, reason: 'HTTP 403: bad jwt for <endpoint-path>', attempts: 1 });
    expect(lines.join('')).not.toContain(SECRET);
  });

  it('404 is gone', async () => {
    const rx = await receiver((_n, _req, res) => res.writeHead(404).end());
    const { s } = sender([rx.origin]);
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toEqual({ kind: 'gone', status: 404, attempts: 1 });
  });
});

describe('endpoint safety at send time', () => {
  it('an endpoint not on the allowlist is refused without any request', async () => {
    const rx = await receiver((_n, _req, res) => res.writeHead(201).end());
    const { s, registry, lines } = sender(['*.googleapis.com']);
    expect(await s.send(to(rx), payload, { ttlSeconds: 60 })).toEqual({
      kind: 'failed',
      reason: 'endpoint-refused',
      retryable: false,
      detail: 'expected an https: endpoint, got http:',
      attempts: 0,
    });
    expect(rx.requests).toHaveLength(0);
    expect(await counterValues(registry)).toEqual({ 'unlisted refused': 1 });
    expect(lines.join('')).not.toContain(SECRET);
  });

  it('a listed host that resolves to a private address is refused without any request', async () => {
    const asked: string[] = [];
    const resolve: Resolve = async (host) => {
      asked.push(host);
      return ['10.0.0.7'];
    };
    const { s, registry } = sender(['*.googleapis.com'], { resolve });
    const endpoint = `https://fcm.googleapis.com/fcm/send/${SECRET}`;
    expect(await s.send({ endpoint, keys }, payload, { ttlSeconds: 60 })).toMatchObject({
      kind: 'failed',
      reason: 'endpoint-refused',
      detail: 'expected every address of fcm.googleapis.com to be public, got 10.0.0.7 (private 10.0.0.0/8)',
    });
    // The DNS answer is cached: a second send does not resolve again.
    await s.send({ endpoint, keys }, payload, { ttlSeconds: 60 });
    expect(asked).toEqual(['fcm.googleapis.com']);
    expect(await counterValues(registry)).toEqual({ '*.googleapis.com refused': 2 });
  });
});

describe('per-origin state bounded by the allowlist', () => {
  it('50 hosts under one pattern share one metric label, whatever the users registered', async () => {
    const resolve: Resolve = async () => ['10.0.0.7'];
    const { s, registry } = sender(['*.googleapis.com'], { resolve });
    for (let i = 0; i < 50; i++) await s.send({ endpoint: `https://h${i}.googleapis.com/p/${SECRET}`, keys }, payload, { ttlSeconds: 60 });
    expect(await counterValues(registry)).toEqual({ '*.googleapis.com refused': 50 });
  });
});

describe('DNS rebinding', () => {
  it('an address that turns private between the check and the connect is refused at connect', async () => {
    const answers = [['93.184.216.34'], ['127.0.0.1']];
    let t = 0;
    const { s, registry } = sender(['*.googleapis.com'], {
      resolve: async () => answers.shift() ?? ['127.0.0.1'],
      // Every clock read is a minute later, so the 60 s DNS cache never answers twice.
      now: () => (t += 61_000),
    });
    const outcome = await s.send({ endpoint: `https://fcm.googleapis.com/fcm/send/${SECRET}`, keys }, payload, { ttlSeconds: 60 });
    expect(outcome).toMatchObject({
      kind: 'failed',
      reason: 'endpoint-refused',
      retryable: false,
      detail: expect.stringContaining('127.0.0.1 (loopback'),
      attempts: 1,
    });
    expect(answers).toEqual([]);
    expect(await counterValues(registry)).toEqual({ '*.googleapis.com refused': 1 });
  });
});

describe('error bodies', () => {
  it('reads at most a short snippet of a large error body', async () => {
    const rx = await receiver((_n, _req, res) => res.writeHead(400).end('x'.repeat(1_000_000)));
    const { s } = sender([rx.origin]);
    const outcome = await s.send(to(rx), payload, { ttlSeconds: 60 });
    expect(outcome).toMatchObject({ kind: 'rejected', status: 400 });
    if (outcome.kind === 'rejected') expect(outcome.reason.length).toBeLessThan(220);
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, ignores junk', () => {
    const now = Date.parse('2025-11-25T09:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Tue, 25 Nov 2025 09:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Tue, 25 Nov 2025 08:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    // A push service's "-5" is junk, not the year -5: no immediate retry storm.
    expect(parseRetryAfter('-5', now)).toBeUndefined();
  });
});
