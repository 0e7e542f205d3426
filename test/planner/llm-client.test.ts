import { afterEach, describe, expect, it } from 'vitest';
import { createLlmClient, LlmError } from '../../src/planner/llm-client.js';
import { closeStubs, counter, failure, hang, harness, MESSAGES, ok, PRIVATE_TEXT, rawBody, SERVICE_KEY, startStub, status } from './llm-client-support.js';

afterEach(closeStubs);

describe('createLlmClient: happy path', () => {
  it('POSTs the OpenAI-shaped request with the bearer key and returns the content', async () => {
    const stub = await startStub();
    stub.respond(ok('{"summary":"x","steps":[]}'));
    const { deps } = harness(`${stub.url}/`);
    const client = createLlmClient(deps);

    await expect(client.complete(MESSAGES)).resolves.toEqual({ content: '{"summary":"x","steps":[]}', attempts: 1 });
    expect(stub.requests).toEqual([
      {
        method: 'POST',
        url: '/v1/chat/completions',
        authorization: `Bearer ${SERVICE_KEY}`,
        body: { model: 'mana-planner-1', temperature: 0.2, messages: MESSAGES },
      },
    ]);
    expect(client.inFlight()).toBe(0);
  });
});

describe('createLlmClient: token usage', () => {
  it("returns the reply's usage (agents' token budgets count it), and none when the reply reports none or nonsense", async () => {
    const stub = await startStub();
    const reply = (usage: unknown) => rawBody(JSON.stringify({ choices: [{ message: { role: 'assistant', content: 'plan' } }], usage }));
    stub.respond(reply({ prompt_tokens: 700, completion_tokens: 34, total_tokens: 734 }), reply(undefined), reply('lots'));
    const client = createLlmClient(harness(stub.url).deps);
    await expect(client.complete(MESSAGES)).resolves.toEqual({ content: 'plan', attempts: 1, usage: { promptTokens: 700, completionTokens: 34, totalTokens: 734 } });
    await expect(client.complete(MESSAGES)).resolves.toEqual({ content: 'plan', attempts: 1 });
    await expect(client.complete(MESSAGES)).resolves.toEqual({ content: 'plan', attempts: 1 });
  });
});

describe('createLlmClient: retries', () => {
  it('429 with Retry-After seconds: waits that long, then succeeds', async () => {
    const stub = await startStub();
    stub.respond(status(429, { 'retry-after': '2' }), ok('done'));
    const h = harness(stub.url);
    await expect(createLlmClient(h.deps).complete(MESSAGES)).resolves.toEqual({ content: 'done', attempts: 2 });
    expect(h.sleeps).toEqual([2_000]);
    expect(await counter(h.registry, 'rate_limited')).toBe(1);
    expect(await counter(h.registry, 'ok')).toBe(1);
  });

  it('429 with Retry-After as an HTTP date', async () => {
    const stub = await startStub();
    const now = Date.parse('2024-05-01T10:00:00Z');
    stub.respond(status(429, { 'retry-after': 'Wed, 01 May 2024 10:00:05 GMT' }), ok('done'));
    const h = harness(stub.url, { now: () => now });
    await createLlmClient(h.deps).complete(MESSAGES);
    expect(h.sleeps).toEqual([5_000]);
  });

  it('caps Retry-After at 60 s', async () => {
    const stub = await startStub();
    stub.respond(status(429, { 'retry-after': '3600' }), ok('done'));
    const h = harness(stub.url);
    await createLlmClient(h.deps).complete(MESSAGES);
    expect(h.sleeps).toEqual([60_000]);
  });

  it('429 without Retry-After and 5xx: exponential backoff with full jitter', async () => {
    const stub = await startStub();
    stub.respond(status(429), status(503), status(500), ok('done'));
    const h = harness(stub.url, { random: () => 0.5 });
    await expect(createLlmClient(h.deps).complete(MESSAGES)).resolves.toEqual({ content: 'done', attempts: 4 });
    // 0.5 × min(30 s, 500 ms × 2^(retry-1))
    expect(h.sleeps).toEqual([250, 500, 1_000]);
  });

  it('gives up after maxRetries on 5xx with a retryable server error', async () => {
    const stub = await startStub();
    stub.respond(status(502));
    const h = harness(stub.url, { maxRetries: 2 });
    const err = await failure(createLlmClient(h.deps).complete(MESSAGES));
    expect(err).toMatchObject({ name: 'LlmError', kind: 'server', status: 502, retryable: true, attempts: 3 });
    expect(stub.requests).toHaveLength(3);
    expect(h.sleeps).toHaveLength(2);
    expect(await counter(h.registry, 'server_error')).toBe(3);
  });

  it('a final 429 is a retryable rate-limited error', async () => {
    const stub = await startStub();
    stub.respond(status(429, { 'retry-after': '1' }));
    const h = harness(stub.url, { maxRetries: 1 });
    const err = await failure(createLlmClient(h.deps).complete(MESSAGES));
    expect(err).toMatchObject({ kind: 'rate-limited', status: 429, retryable: true, attempts: 2 });
  });

  it('4xx other than 429 is not retried', async () => {
    const stub = await startStub();
    stub.respond(status(400), ok('never'));
    const h = harness(stub.url);
    const err = await failure(createLlmClient(h.deps).complete(MESSAGES));
    expect(err).toMatchObject({ kind: 'client', status: 400, retryable: false, attempts: 1 });
    expect(stub.requests).toHaveLength(1);
    expect(h.sleeps).toEqual([]);
    expect(await counter(h.registry, 'client_error')).toBe(1);
  });

  it('does not follow a redirect (it would carry the key elsewhere)', async () => {
    const target = await startStub();
    const stub = await startStub();
    stub.respond(status(307, { location: `${target.url}/v1/chat/completions` }));
    const err = await failure(createLlmClient(harness(stub.url).deps).complete(MESSAGES));
    expect(err).toMatchObject({ kind: 'client', status: 307 });
    expect(target.requests).toHaveLength(0);
  });

  it('network errors are retried, then reported with their cause', async () => {
    const stub = await startStub();
    await stub.close();
    const h = harness(stub.url, { maxRetries: 2 });
    const err = await failure(createLlmClient(h.deps).complete(MESSAGES));
    expect(err).toMatchObject({ kind: 'network', retryable: true, attempts: 3 });
    expect(err.status).toBeUndefined();
    expect(err.cause).toBeInstanceOf(Error);
    expect(await counter(h.registry, 'network')).toBe(3);
  });

  it('works with the real sleep', async () => {
    const stub = await startStub();
    stub.respond(status(500), ok('done'));
    const { sleep: _unused, ...deps } = harness(stub.url, { random: () => 0.01 }).deps;
    await expect(createLlmClient(deps).complete(MESSAGES)).resolves.toEqual({ content: 'done', attempts: 2 });
  });
});

describe('createLlmClient: bad replies', () => {
  it.each([
    ['non-JSON body', rawBody('<html>Bad gateway, but 200</html>'), 'reply is not JSON'],
    ['JSON without choices', rawBody('{"object":"error"}'), 'no choices[0].message.content'],
    ['content not a string', rawBody('{"choices":[{"message":{"content":null,"tool_calls":[]}}]}'), 'no choices[0].message.content'],
    ['empty choices', rawBody('{"choices":[]}'), 'no choices[0].message.content'],
  ])('%s → bad-reply, not retried', async (_name, handler, message) => {
    const stub = await startStub();
    stub.respond(handler, ok('never'));
    const h = harness(stub.url);
    const err = await failure(createLlmClient(h.deps).complete(MESSAGES));
    expect(err).toMatchObject({ kind: 'bad-reply', status: 200, retryable: false, attempts: 1 });
    expect(err.message).toContain(message);
    expect(stub.requests).toHaveLength(1);
    expect(await counter(h.registry, 'bad_reply')).toBe(1);
  });
});

describe('createLlmClient: timeouts and aborts', () => {
  it('times out a hanging attempt, retries, and reports a timeout', async () => {
    const stub = await startStub();
    stub.respond(hang);
    const h = harness(stub.url, { timeoutMs: 150, maxRetries: 1 });
    const started = Date.now();
    const err = await failure(createLlmClient(h.deps).complete(MESSAGES));
    expect(err).toMatchObject({ kind: 'timeout', retryable: true, attempts: 2 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(stub.requests).toHaveLength(2);
    expect(await counter(h.registry, 'timeout')).toBe(2);
  });

  it('a timed-out attempt is followed by a successful retry', async () => {
    const stub = await startStub();
    stub.respond(hang, ok('done'));
    const h = harness(stub.url, { timeoutMs: 150 });
    await expect(createLlmClient(h.deps).complete(MESSAGES)).resolves.toEqual({ content: 'done', attempts: 2 });
  });

  it('the timeout covers a reply body that never finishes', async () => {
    const stub = await startStub();
    stub.respond((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"choices":');
    });
    const h = harness(stub.url, { timeoutMs: 150, maxRetries: 0 });
    const err = await failure(createLlmClient(h.deps).complete(MESSAGES));
    expect(err.kind).toBe('timeout');
  });

  it('the caller can abort a request in flight: its reason is thrown, nothing retried', async () => {
    const stub = await startStub();
    stub.respond(hang);
    const h = harness(stub.url, { timeoutMs: 10_000 });
    const client = createLlmClient(h.deps);
    const controller = new AbortController();
    const call = client.complete(MESSAGES, { signal: controller.signal });
    while (stub.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(client.inFlight()).toBe(1);
    controller.abort(new Error('shutting down'));
    await expect(call).rejects.toThrow('shutting down');
    expect(client.inFlight()).toBe(0);
    expect(stub.requests).toHaveLength(1);
    expect(h.sleeps).toEqual([]);
  });

  it('the caller can abort during a backoff wait', async () => {
    const stub = await startStub();
    stub.respond(status(500));
    const h = harness(stub.url, { sleep: () => new Promise(() => undefined) });
    const controller = new AbortController();
    const call = createLlmClient(h.deps).complete(MESSAGES, { signal: controller.signal });
    while (stub.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    controller.abort(new Error('stop'));
    await expect(call).rejects.toThrow('stop');
    expect(stub.requests).toHaveLength(1);
  });
});

describe('createLlmClient: concurrency', () => {
  it('10 calls with concurrency 3: the server never sees more than 3 at once', async () => {
    const stub = await startStub();
    stub.respond(ok('done', 40));
    const h = harness(stub.url, { concurrency: 3 });
    const client = createLlmClient(h.deps);
    let maxInFlight = 0;
    const poll = setInterval(() => (maxInFlight = Math.max(maxInFlight, client.inFlight())), 2);
    try {
      const results = await Promise.all(Array.from({ length: 10 }, () => client.complete(MESSAGES)));
      expect(results.every((r) => r.content === 'done')).toBe(true);
    } finally {
      clearInterval(poll);
    }
    expect(stub.requests).toHaveLength(10);
    expect(stub.maxConcurrent).toBe(3);
    expect(maxInFlight).toBeLessThanOrEqual(3);
    expect(client.inFlight()).toBe(0);
  });

  it('the slot is freed during backoff, so other calls go ahead', async () => {
    const stub = await startStub();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    stub.respond(status(500), ok('second'), ok('first-retry'));
    const h = harness(stub.url, { concurrency: 1, sleep: () => gate });
    const client = createLlmClient(h.deps);
    const first = client.complete(MESSAGES);
    while (stub.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    await expect(client.complete(MESSAGES)).resolves.toEqual({ content: 'second', attempts: 1 });
    release();
    await expect(first).resolves.toEqual({ content: 'first-retry', attempts: 2 });
  });
});

describe('createLlmClient: secrets and metrics', () => {
  it('never logs the service key or the message contents', async () => {
    const stub = await startStub();
    stub.respond(status(429, { 'retry-after': '1' }), status(500), status(401));
    const h = harness(stub.url);
    const err = await failure(createLlmClient(h.deps).complete(MESSAGES));
    const closed = await startStub();
    await closed.close();
    await failure(createLlmClient({ ...h.deps, url: closed.url, maxRetries: 0 }).complete(MESSAGES));

    expect(h.logLines.length).toBeGreaterThanOrEqual(3);
    const logs = h.logLines.join('\n');
    expect(logs).toContain('llm attempt failed, retrying');
    expect(logs).toContain('llm request failed');
    expect(logs).not.toContain(SERVICE_KEY);
    expect(logs).not.toContain(PRIVATE_TEXT);
    expect(`${err.message} ${JSON.stringify(err)} ${String(err.stack)}`).not.toContain(SERVICE_KEY);
  });

  it('records a duration per attempt, labelled by outcome', async () => {
    const stub = await startStub();
    stub.respond(status(500), ok('done'));
    const h = harness(stub.url);
    await createLlmClient(h.deps).complete(MESSAGES);
    const text = await h.registry.metrics();
    expect(text).toContain('mana_ai_llm_request_duration_seconds_count{outcome="server_error"} 1');
    expect(text).toContain('mana_ai_llm_request_duration_seconds_count{outcome="ok"} 1');
    expect(text).toContain('mana_ai_llm_requests_total{outcome="ok"} 1');
  });

  it('two clients on separate registries keep separate metrics; a second client on one registry shares them', async () => {
    const stub = await startStub();
    const a = harness(stub.url);
    const b = harness(stub.url);
    await createLlmClient(a.deps).complete(MESSAGES);
    await createLlmClient(b.deps).complete(MESSAGES);
    await createLlmClient(b.deps).complete(MESSAGES);
    expect(await counter(a.registry, 'ok')).toBe(1);
    expect(await counter(b.registry, 'ok')).toBe(2);
  });
});

describe('createLlmClient: configuration', () => {
  it.each([
    ['concurrency 0', { concurrency: 0 }],
    ['negative retries', { maxRetries: -1 }],
    ['zero timeout', { timeoutMs: 0 }],
    ['not a URL', { url: 'mana-llm:8080' }],
  ])('refuses %s', (_name, extra) => {
    expect(() => createLlmClient({ ...harness('http://127.0.0.1:1').deps, ...extra })).toThrow(RangeError);
  });
});
