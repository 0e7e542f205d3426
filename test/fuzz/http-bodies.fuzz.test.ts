/**
 * Every HTTP route, fuzzed through a real socket: the operations come from
 * the coordinator's own /openapi.json (plus /health and /metrics), and each
 * gets random JSON values, random text that is not JSON, wrong content
 * types, random path parameters and query strings, garbage credentials, and
 * bodies over the 64 KiB limit (with a Content-Length, and chunked without
 * one).
 *
 * What must hold: the answer is never a 5xx; a body the route cannot take
 * is a 4xx with the `{ error: { code, message } }` shape; an oversized body
 * is a 413; nothing is logged as an unhandled error; the process keeps
 * serving (/health answers after every case).
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../support/db.js';
import { MAX_BODY_BYTES } from '../../src/http/app.js';
import { SERVICE_KEY, startCaptured, type CapturedCoordinator } from '../faults/support.js';
import { subscriptionKeys } from '../nudge/web-push-helpers.js';

/** An exact-origin allowlist entry: registration never contacts it, so nothing needs to listen there. */
const PUSH_ORIGIN = 'http://127.0.0.1:9';

let db: TestDb;
let c: CapturedCoordinator;
let token: string;
let operations: Operation[];

interface Operation {
  method: string;
  /** OpenAPI path, e.g. /v1/occurrences/{iterationId}/claim */
  path: string;
  jsonBody: boolean;
  query: string[];
}

beforeAll(async () => {
  db = await createTestDb();
  // A generous rate limit, so the fuzzer reaches body validation instead of 429s.
  c = await startCaptured(db.sql, { RATE_LIMIT_PER_MINUTE: '100000', TICK_INTERVAL_MS: '1000', PUSH_ENDPOINT_ALLOWLIST: PUSH_ORIGIN }, { level: 'info' });
  token = await c.token('fuzzer');
  const oa = (await (await fetch(`${c.url}/openapi.json`)).json()) as {
    paths: Record<string, Record<string, { requestBody?: { content?: Record<string, unknown> }; parameters?: { in: string; name: string }[] }>>;
  };
  operations = Object.entries(oa.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({
      method: method.toUpperCase(),
      path,
      jsonBody: Boolean(op.requestBody?.content?.['application/json']),
      query: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
    })),
  );
  operations.push({ method: 'GET', path: '/health', jsonBody: false, query: [] }, { method: 'GET', path: '/metrics', jsonBody: false, query: [] });
});

afterAll(async () => {
  await c?.stop();
  await db?.drop();
});

interface Answer {
  status: number;
  body: string;
}

/** One raw request: any method, any headers, any body bytes, chunked or not. */
function send(method: string, path: string, headers: Record<string, string>, body?: Buffer, chunked = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const url = new URL(c.url);
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        // Node's client frames a body as chunked by default only for some methods; say it always.
        headers: { ...headers, ...(body ? (chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(body.length) }) : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body && chunked) {
      // Several chunks, so a limit that only looks at Content-Length would miss it.
      for (let i = 0; i < body.length; i += 8192) req.write(body.subarray(i, i + 8192));
    } else if (body) {
      req.write(body);
    }
    req.end();
  });
}

function authFor(path: string): Record<string, string> {
  if (path.startsWith('/internal/')) return { 'x-service-key': SERVICE_KEY };
  return { authorization: `Bearer ${token}` };
}

const pathParam = fc.oneof(
  { weight: 3, arbitrary: fc.uuid() },
  { weight: 3, arbitrary: fc.constantFrom('dev1', 'phone.1', 'a:b-c_d') },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 300 }) },
  { weight: 1, arbitrary: fc.constantFrom('..', '%00', '%2e%2e%2f', "' OR 1=1 --", 'x'.repeat(5000), '%', '%ZZ', '\u0000') },
);
const queryValue = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('1', '0', '-1', '1e999', 'NaN', '99999999999999999999', 'true', '', '%00', 'x'.repeat(3000)));

function fillPath(path: string, params: string[]): string {
  let i = 0;
  return path.replace(/\{[^}]+\}/g, () => encodeURIComponent(params[i++] ?? 'x'));
}

type BodyCase =
  | { kind: 'json'; value: unknown }
  | { kind: 'text'; text: string; contentType: string }
  | { kind: 'none'; contentType?: string };

const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  'application/json; charset=utf-16',
  'application/vnd.api+json',
  '',
);
const bodyCase: fc.Arbitrary<BodyCase> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 4, stringUnit: 'grapheme' }).map((value): BodyCase => ({ kind: 'json', value })) },
  {
    weight: 2,
    arbitrary: fc
      .record({ deviceId: fc.oneof(fc.constant('dev1'), fc.string()), userId: fc.oneof(fc.constant('fuzzer'), fc.string()), changes: fc.anything() }, { requiredKeys: [] })
      .map((value): BodyCase => ({ kind: 'json', value })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.oneof(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.constantFrom('{', '{"a":', '[1,2', 'null', '\uFEFF{}', '{"deviceId":"dev1"', '{"__proto__":{"admin":true}}', '{"a":1}{"b":2}', 'NaN', '1e999999')),
        contentType,
      )
      .map(([text, ct]): BodyCase => ({ kind: 'text', text, contentType: ct })),
  },
  { weight: 1, arbitrary: fc.option(contentType, { nil: undefined }).map((ct): BodyCase => ({ kind: 'none', contentType: ct })) },
);
const authCase = fc.oneof(
  { weight: 6, arbitrary: fc.constant<'valid' | null>('valid') },
  { weight: 1, arbitrary: fc.constant<'valid' | null>(null) },
  { weight: 2, arbitrary: fc.constantFrom('Bearer', 'Bearer ', 'Basic YWxhZGRpbjpvcGVuc2VzYW1l', 'Bearer a.b.c', 'Bearer ....', `Bearer ${'A'.repeat(8000)}`, 'bearer x y z', 'Bearer %00') },
);

function isErrorShape(body: string): boolean {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
    return typeof parsed.error?.code === 'string' && typeof parsed.error.message === 'string';
  } catch {
    return false;
  }
}

async function stillServing(): Promise<void> {
  const health = await send('GET', '/health', {});
  expect(health.status).toBe(200);
}

function unhandledErrors(): string[] {
  return c.records().filter((r) => r['msg'] === 'unhandled error').map((r) => JSON.stringify(r).slice(0, 500));
}

describe('HTTP bodies, paths, queries and credentials', () => {
  it('random input to every route never yields a 5xx; refused bodies are 4xx with the error shape', async () => {
    const failures: string[] = [];
    // How often each conditional check below ran: a run that never reached one proves nothing about it.
    const checked = { answered: 0, errorShape: 0, bodyRefused: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.array(pathParam, { minLength: 2, maxLength: 2 }),
        bodyCase,
        authCase,
        fc.array(fc.tuple(fc.constantFrom('limit', 'userId', 'open', 'x'), queryValue), { maxLength: 3 }),
        async (n, params, body, auth, query) => {
          const op = operations[n % operations.length]!;
          const qs = query.length ? `?${query.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}` : '';
          const path = fillPath(op.path, params) + qs;
          const headers: Record<string, string> =
            auth === 'valid' ? authFor(op.path) : auth === null ? {} : { authorization: auth, 'x-service-key': auth.slice(0, 200) };
          let payload: Buffer | undefined;
          if (body.kind === 'json') {
            headers['content-type'] = 'application/json';
            payload = Buffer.from(JSON.stringify(body.value) ?? 'null');
          } else if (body.kind === 'text') {
            if (body.contentType) headers['content-type'] = body.contentType;
            payload = Buffer.from(body.text);
          } else if (body.contentType) {
            headers['content-type'] = body.contentType;
          }
          // Node's client refuses a body on GET only by convention; the server must cope anyway.
          const res = await send(op.method, path, headers, payload);
          const what = `${op.method} ${path.slice(0, 120)} ${JSON.stringify(body).slice(0, 200)} → ${res.status} ${res.body.slice(0, 200)}`;
          if (res.status >= 500) failures.push(what);
          expect(res.status, what).toBeLessThan(500);
          if (res.status < 400) checked.answered++;
          if (res.status >= 400 && res.status !== 431 && op.path !== '/metrics') {
            expect(isErrorShape(res.body), what).toBe(true);
            checked.errorShape++;
          }
          // A route that needs a JSON object body, given anything that is not one, must refuse it.
          if (op.jsonBody && auth === 'valid' && (body.kind !== 'json' || typeof body.value !== 'object' || body.value === null || Array.isArray(body.value))) {
            if (!(body.kind === 'text' && /^application\/(json|vnd\.api\+json)/.test(body.contentType) && /^\s*\{/.test(body.text.replace(/^\uFEFF/, '')))) {
              expect(res.status, what).toBeGreaterThanOrEqual(400);
              checked.bodyRefused++;
            }
          }
        },
      ),
      { numRuns: 600, skipAllAfterTimeLimit: 35_000 },
    );
    expect(failures).toEqual([]);
    expect(checked.answered, JSON.stringify(checked)).toBeGreaterThan(0);
    expect(checked.errorShape, JSON.stringify(checked)).toBeGreaterThan(0);
    expect(checked.bodyRefused, JSON.stringify(checked)).toBeGreaterThan(0);
    expect(unhandledErrors()).toEqual([]);
    await stillServing();
  }, 60_000);

  it('bodies of the right shape with hostile values (NUL, huge, unicode, deep) are stored or refused, never a 5xx', async () => {
    const nasty = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 50 }),
      fc.constantFrom('\u0000', 'a\u0000b', '\uFFFF', '\u202e', 'x'.repeat(20_000), '🚀'.repeat(500)),
    );
    const nastyJson = fc.jsonValue({ maxDepth: 3, stringUnit: 'grapheme' }).chain((v) => nasty.map((n) => ({ v, n })));
    // Random CJK text does not compress: 1,000 of them are ~3 KB, past a btree entry's 2,704 bytes.
    const incompressible = fc.array(fc.integer({ min: 0x4e00, max: 0x9fff }), { minLength: 900, maxLength: 1200 }).map((cps) => String.fromCodePoint(...cps));
    const cases = fc.oneof(
      fc.tuple(nasty, nastyJson, fc.constantFrom('insert', 'update', 'delete')).map(([recordId, { v, n }, op]) => ({
        method: 'POST',
        path: '/dev/sync/changes',
        body: { changes: [{ appId: 'ai', tableName: 'aiMissions', recordId: recordId || 'r', op, data: { title: n, blob: v, [n]: n }, fieldTimestamps: { title: n }, fieldMeta: { title: { at: n } } }] },
      })),
      fc.tuple(fc.oneof(nasty, incompressible), fc.constantFrom('dev1', 'phone')).map(([tail, device]) => ({
        method: 'PUT',
        path: `/v1/devices/${device}/push-subscription`,
        body: { endpoint: `${PUSH_ORIGIN}/push/${tail}`, keys: subscriptionKeys(), expirationTime: null },
      })),
      fc.tuple(fc.constantFrom('claim', 'complete', 'release'), nasty).map(([action, n]) => ({
        method: 'POST',
        path: `/v1/occurrences/${crypto.randomUUID()}/${action}`,
        body: { deviceId: n, reason: n },
      })),
      nasty.map((n) => ({ method: 'POST', path: '/dev/token', body: { userId: n } })),
    );
    const outcomes = { stored: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(cases, async ({ method, path, body }) => {
        const res = await send(method, path, { ...authFor(path), 'content-type': 'application/json' }, Buffer.from(JSON.stringify(body)));
        const what = `${method} ${path.slice(0, 80)} ${JSON.stringify(body).slice(0, 300)} → ${res.status} ${res.body.slice(0, 300)}`;
        expect(res.status, what).toBeLessThan(500);
        // Stored (2xx) or refused (4xx with the error shape): both must happen over a run.
        if (res.status < 400) outcomes.stored++;
        else {
          expect(isErrorShape(res.body), what).toBe(true);
          outcomes.refused++;
        }
      }),
      { numRuns: 300, skipAllAfterTimeLimit: 25_000 },
    );
    expect(outcomes.stored, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(outcomes.refused, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(unhandledErrors()).toEqual([]);
    await stillServing();
  }, 40_000);

  it(`bodies over ${MAX_BODY_BYTES} bytes are refused with 413, with or without a Content-Length`, async () => {
    const big = Buffer.from(JSON.stringify({ deviceId: 'dev1', pad: 'x'.repeat(MAX_BODY_BYTES + 10) }));
    const results: string[] = [];
    for (const op of operations.filter((o) => o.method !== 'GET')) {
      for (const chunked of [false, true]) {
        const res = await send(op.method, fillPath(op.path, [crypto.randomUUID(), 'dev1']), { ...authFor(op.path), 'content-type': 'application/json' }, big, chunked);
        results.push(`${op.method} ${op.path} ${chunked ? 'chunked' : 'content-length'} → ${res.status}`);
        expect(res.status, `${op.method} ${op.path} chunked=${String(chunked)}: ${res.body.slice(0, 200)}`).toBe(413);
        expect(isErrorShape(res.body)).toBe(true);
      }
    }
    // A lying Content-Length (small) with a big chunked body cannot coexist in HTTP/1.1; a huge declared length is refused up front.
    const declared = await send('POST', '/dev/token', { 'content-type': 'application/json', 'content-length': String(10 * 1024 * 1024) }, Buffer.from('{}'), true);
    expect([400, 413]).toContain(declared.status);
    expect(results.length).toBeGreaterThan(0);
    expect(unhandledErrors()).toEqual([]);
    await stillServing();
  });

  it('headers beyond the server limit and unknown methods are 4xx, not crashes', async () => {
    // Past Node's 16 KiB header limit: an answer, 431, never a dropped connection.
    const huge = await send('GET', '/v1/occurrences', { authorization: `Bearer ${'a'.repeat(20_000)}` });
    expect(huge.status).toBe(431);
    for (const method of ['PATCH', 'OPTIONS', 'TRACE', 'PROPFIND']) {
      const res = await send(method, '/v1/occurrences', authFor('/v1/occurrences'));
      expect(res.status, method).toBeGreaterThanOrEqual(400);
      expect(res.status, method).toBeLessThan(500);
    }
    await stillServing();
  });
});
