/**
 * The operator routes of a real coordinator on a real database: liveness,
 * readiness (and 503 when the database goes away, 200 when it is back),
 * metrics, the service-key gate, the tick and due-missions routes, OpenAPI.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createTestDb, type TestDb } from '../support/db.js';
import { loadConfig } from '../../src/config.js';
import { startCoordinator, type Coordinator } from '../../src/coordinator.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { insertRows, rowMaker } from '../projection/log-db.js';
import { freePort } from '../support/free-port.js';

const KEY = 'ops-test-service-key-0123456789';
const VERSION = '9.8.7-test';
let db: TestDb;
let coordinator: Coordinator;
let logText = '';

const baseEnv = (url: string) => ({
  NODE_ENV: 'test',
  PORT: '0',
  HOST: '127.0.0.1',
  TICK_ENABLED: 'false',
  DEV_MODE: '1',
  SYNC_DATABASE_URL: url,
  MANA_SERVICE_KEY: KEY,
  LOG_LEVEL: 'info',
});

function configFor(url: string) {
  return loadConfig(baseEnv(url), VERSION);
}

const logTo = () =>
  pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logText += chunk.toString();
        cb();
      },
    }),
  );

beforeAll(async () => {
  db = await createTestDb({ acceptRowsManaSyncRefuses: true });
  coordinator = await startCoordinator({ config: configFor(db.url), sql: db.sql, log: logTo() });
});

afterAll(async () => {
  await coordinator?.stop();
  await db?.drop();
});

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${coordinator.url}${path}`, { headers });
const post = (path: string, headers: Record<string, string> = {}) => fetch(`${coordinator.url}${path}`, { method: 'POST', headers });

describe('liveness, readiness, metrics', () => {
  it('GET /health without the service key → 200 with the status only', async () => {
    for (const headers of [{}, { 'x-service-key': 'wrong-wrong-wrong' }] as Record<string, string>[]) {
      const res = await get('/health', headers);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    }
  });

  it('GET /health with the service key → 200 with version and scheduler state', async () => {
    const res = await get('/health', { 'x-service-key': KEY });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'ok', version: VERSION });
    expect(body['scheduler']).toMatchObject({ state: 'idle', enabled: false, lastError: null });
    expect(Object.keys(body['scheduler'] as object).sort()).toEqual(['enabled', 'lastError', 'lastPassAt', 'nextWakeAt', 'state']);
  });

  it('GET /ready → 200 when the database answers and migrations ran', async () => {
    const res = await get('/ready');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready' });
  });

  it('GET /metrics → Prometheus text with the coordinator metrics', async () => {
    await post('/internal/tick', { 'x-service-key': KEY });
    const res = await get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    for (const name of [
      'mana_ai_ticks_total',
      'mana_ai_tick_duration_seconds_bucket',
      'mana_ai_projection_rows_applied_total',
      'mana_ai_projection_rows_skipped_total',
      'mana_ai_due_missions',
      'mana_ai_projection_horizon_stalled',
    ]) {
      expect(text).toMatch(new RegExp(`^${name}[ {]`, 'm'));
    }
    expect(text).toMatch(/^mana_ai_ticks_total\{outcome="ok"\} [1-9]/m);
  });
});

describe('service key', () => {
  const gated: [string, string][] = [
    ['POST', '/internal/tick'],
    ['GET', '/internal/missions/due'],
  ];
  const wrong: [string, Record<string, string>][] = [
    ['no header', {}],
    ['an empty key', { 'x-service-key': '' }],
    ['a wrong key of the same length', { 'x-service-key': KEY.replace(/.$/, 'X') }],
    ['a prefix of the key', { 'x-service-key': KEY.slice(0, 10) }],
    ['the key with a suffix', { 'x-service-key': `${KEY}x` }],
    ['the key as a bearer token', { authorization: `Bearer ${KEY}` }],
  ];
  for (const [method, path] of gated) {
    for (const [name, headers] of wrong) {
      it(`${method} ${path} with ${name} → 401`, async () => {
        const res = await fetch(`${coordinator.url}${path}`, { method, headers });
        expect(res.status).toBe(401);
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe('service_key_required');
        expect(body.error.message).toMatch(/X-Service-Key/);
      });
    }
    it(`${method} ${path} with the key → 200`, async () => {
      const res = await fetch(`${coordinator.url}${path}`, { method, headers: { 'X-Service-Key': KEY } });
      expect(res.status).toBe(200);
    });
  }

  it('a wrong key does not run a pass', async () => {
    const before = coordinator.scheduler.state().lastPassAt;
    await new Promise((r) => setTimeout(r, 5));
    await post('/internal/tick', { 'x-service-key': 'nope-nope-nope' });
    expect(coordinator.scheduler.state().lastPassAt).toBe(before);
  });

  it('the key never appears in the logs', () => {
    expect(logText.length).toBeGreaterThan(0);
    expect(logText).not.toContain(KEY);
  });
});

describe('tick and due missions', () => {
  it('POST /internal/tick → the stats of that pass; GET /internal/missions/due → [{userId, missionId, nextRunAt}]', async () => {
    const past = new Date(Date.now() - 60_000).toISOString();
    const createdAt = new Date(Date.now() + 10_000).toISOString();
    const row = rowMaker((n) => ({ id: `00000000-0000-4000-8000-0000000000a${n}`, userId: 'ops-u1', op: 'insert', createdAt }));
    await insertRows(db.sql, [
      row({ recordId: 'ops-m1', data: { title: 'due', state: 'active', nextRunAt: past, createdAt: past } }),
      row({ recordId: 'ops-m2', data: { title: 'not due', state: 'paused', nextRunAt: past, createdAt: past } }),
      row({ recordId: 'ops-m3', op: 'oops', data: {} }),
    ]);
    const res = await post('/internal/tick', { 'x-service-key': KEY });
    expect(res.status).toBe(200);
    const stats = (await res.json()) as Record<string, unknown>;
    expect(stats).toMatchObject({ rowsApplied: 2, rowsSkipped: 1, missionsDue: 1 });
    expect(typeof stats['durationMs']).toBe('number');
    expect(stats['durationMs']).toBeGreaterThanOrEqual(0);

    const due = await get('/internal/missions/due', { 'x-service-key': KEY });
    expect(due.status).toBe(200);
    const list = (await due.json()) as unknown[];
    expect(list).toEqual([{ userId: 'ops-u1', missionId: 'ops-m1', nextRunAt: `${past.slice(0, 23)}000Z` }]);

    const again = (await (await post('/internal/tick', { 'x-service-key': KEY })).json()) as Record<string, unknown>;
    expect(again).toMatchObject({ rowsApplied: 0, rowsSkipped: 0 });
  });

  it('GET /internal/missions/due validates limit', async () => {
    expect((await get('/internal/missions/due?limit=1', { 'x-service-key': KEY })).status).toBe(200);
    for (const bad of ['0', 'abc', '-3', '1000001']) {
      const res = await get(`/internal/missions/due?limit=${bad}`, { 'x-service-key': KEY });
      expect(res.status, bad).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
    }
  });

  it('GET /openapi.json lists the routes', async () => {
    const res = await get('/openapi.json');
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; info: { version: string }; paths: Record<string, Record<string, unknown>>; components?: unknown };
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.info.version).toBe(VERSION);
    expect(doc.paths['/health']).toHaveProperty('get');
    expect(doc.paths['/ready']).toHaveProperty('get');
    expect(doc.paths['/internal/tick']).toHaveProperty('post');
    expect(doc.paths['/internal/missions/due']).toHaveProperty('get');
    expect(JSON.stringify(doc.components)).toContain('TickStats');
  });
});

/** A TCP proxy in front of the database that can cut every connection and refuse new ones. */
async function startProxy(targetPort: number) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  async function open(): Promise<void> {
    // Open already: a second server on the same port would fail and orphan the first.
    if (server) return;
    server = createServer((client) => {
      const upstream = connect(targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
        s.on('close', () => sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(port, '127.0.0.1', () => resolve());
    });
    port = (server.address() as { port: number }).port;
  }
  async function cut(): Promise<void> {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.destroy();
    await new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()));
  }
  await open();
  return { port: () => port, open, cut };
}

describe('/metrics protection', () => {
  const TOKEN = 'metrics-token-0123456789abcdef';

  it('METRICS_TOKEN: /metrics answers 401 without the Bearer token, 200 with it', async () => {
    const c = await startCoordinator({ config: loadConfig({ ...baseEnv(db.url), METRICS_TOKEN: TOKEN }, VERSION), sql: db.sql, log: pino({ level: 'silent' }) });
    try {
      for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: `Bearer ${TOKEN}x` }, { 'x-service-key': KEY }] as Record<string, string>[]) {
        const res = await fetch(`${c.url}/metrics`, { headers });
        expect(res.status, JSON.stringify(headers)).toBe(401);
        expect(await res.text()).not.toContain('# HELP');
      }
      const ok = await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/^# HELP mana_ai_ticks_total/m);
    } finally {
      await c.stop();
    }
  });

  it('METRICS_PORT: /metrics on its own listener (token still required there), not on the main port', async () => {
    const c = await startCoordinator({
      config: loadConfig({ ...baseEnv(db.url), METRICS_TOKEN: TOKEN, METRICS_PORT: String(await freePort()) }, VERSION),
      sql: db.sql,
      log: pino({ level: 'silent' }),
    });
    try {
      expect(c.metricsPort).toBeGreaterThan(0);
      expect((await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
      const base = `http://127.0.0.1:${c.metricsPort}`;
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      const ok = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/^# HELP mana_ai_ticks_total/m);
      expect((await fetch(`${base}/health`)).status).toBe(404);
    } finally {
      await c.stop();
    }
  });
});

describe('readiness when the database is unreachable', () => {
  it('GET /ready → 503 while the database is away (health stays 200), and 200 again when it is back', async () => {
    const target = Number(new URL(db.url).port);
    const proxy = await startProxy(target);
    const url = new URL(db.url);
    url.port = String(proxy.port());
    const sql: Sql = createSql(url.toString(), { max: 4 });
    const c = await startCoordinator({ config: configFor(url.toString()), sql, log: pino({ level: 'silent' }) });
    try {
      expect((await fetch(`${c.url}/ready`)).status).toBe(200);

      await proxy.cut();
      const started = Date.now();
      const res = await fetch(`${c.url}/ready`);
      expect(res.status).toBe(503);
      // Unauthenticated: the status, no internal error text.
      expect(await res.json()).toEqual({ status: 'not-ready' });
      const detailed = await fetch(`${c.url}/ready`, { headers: { 'x-service-key': KEY } });
      expect(detailed.status).toBe(503);
      const body = (await detailed.json()) as { status: string; reason: string };
      expect(body.status).toBe('not-ready');
      expect(body.reason).toMatch(/database unreachable/);
      expect(Date.now() - started).toBeLessThan(6000);
      expect((await fetch(`${c.url}/health`)).status).toBe(200);
      const tick = await fetch(`${c.url}/internal/tick`, { method: 'POST', headers: { 'x-service-key': KEY } });
      expect(tick.status).toBeGreaterThanOrEqual(500);

      await proxy.open();
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        status = (await fetch(`${c.url}/ready`)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(200);
      expect((await fetch(`${c.url}/internal/tick`, { method: 'POST', headers: { 'x-service-key': KEY } })).status).toBe(200);
    } finally {
      await proxy.open().catch(() => undefined);
      await c.stop();
      await sql.end({ timeout: 5 });
      await proxy.cut();
    }
  }, 30_000);
});
