/**
 * Shared by the fault, fuzz and security suites: a real coordinator on a test
 * database whose pino output is captured, /metrics read over HTTP the way an
 * operator's scraper reads it, small node:http servers that misbehave on
 * purpose, and the "exactly one plan" count over sync_changes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { startCoordinator, type Coordinator } from '../../src/coordinator.js';
import type { Sql } from '../../src/db/pool.js';
import type { FallbackPlanner } from '../../src/nudge/router.js';

export const SERVICE_KEY = 'fault-suite-service-key-0123456789';

export interface CapturedCoordinator extends Coordinator {
  wsUrl: string;
  /** Raw pino lines, as written. */
  lines: string[];
  /** Parsed log records. */
  records(): Record<string, unknown>[];
  /** A dev-default token for the user (POST /dev/token). */
  token(userId: string): Promise<string>;
  /** GET /metrics, parsed. */
  scrape(): Promise<MetricSamples>;
}

/** Starts a coordinator on `sql` with pino captured at `level`; env overrides the defaults below. */
export async function startCaptured(
  sql: Sql,
  env: Record<string, string> = {},
  opts: { level?: string; fallback?: FallbackPlanner } = {},
): Promise<CapturedCoordinator> {
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    TICK_INTERVAL_MS: '100',
    MANA_SERVICE_KEY: SERVICE_KEY,
    PLANNER_RETRY_BACKOFF_MS: '100,100',
    PLANNER_TIMEOUT_MS: '5000',
    ...env,
  });
  const lines: string[] = [];
  const echo = process.env['TEST_LOG'];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        lines.push(line);
        if (echo) process.stdout.write(`${line}\n`);
      }
      done();
    },
  });
  const log = pino({ level: opts.level ?? 'info' }, sink);
  const c = await startCoordinator({ config, sql, log, fallback: opts.fallback });
  return {
    ...c,
    wsUrl: `${c.url.replace(/^http/, 'ws')}/v1/ws`,
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    async token(userId) {
      const res = await fetch(`${c.url}/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId }) });
      if (res.status !== 200) throw new Error(`POST /dev/token answered ${res.status}`);
      return ((await res.json()) as { token: string }).token;
    },
    scrape: () => scrapeMetrics(c.url),
  };
}

export interface MetricSamples {
  text: string;
  /** Sum of the samples of `name` whose labels include `labels`. */
  value(name: string, labels?: Record<string, string>): number;
  /** True when `name` is exposed at all (a HELP line). */
  has(name: string): boolean;
}

/** Reads /metrics over HTTP and parses the Prometheus text format (no exemplars, no timestamps needed). */
export async function scrapeMetrics(baseUrl: string): Promise<MetricSamples> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  const text = await res.text();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return {
    text,
    value: (name, want = {}) =>
      samples
        .filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
        .reduce((sum, s) => sum + s.value, 0),
    has: (name) => text.includes(`# HELP ${name} `),
  };
}

export interface FaultServer {
  origin: string;
  /** Requests received, in order (path and when). */
  requests: { path: string; at: number }[];
  close(): Promise<void>;
}

/**
 * A loopback HTTP server whose handler decides each answer; a handler that
 * never ends the response models a hang. Hanging sockets are cut on close.
 */
export async function startFaultServer(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<FaultServer> {
  const requests: FaultServer['requests'] = [];
  const server: Server = createServer((req, res) => {
    res.on('error', () => undefined);
    req.on('error', () => undefined);
    req.resume();
    req.on('end', () => {
      requests.push({ path: req.url ?? '', at: Date.now() });
      handler(req, res, requests.length);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

/**
 * How many sync_changes rows carry this iteration, and how many times the
 * projected mission lists it. "Exactly one plan" is 1 and 1.
 */
export async function planCount(sql: Sql, userId: string, missionId: string, iterationId: string): Promise<{ rows: number; projected: number }> {
  const [r] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM sync_changes
    WHERE app_id = 'ai' AND table_name = 'aiMissions' AND user_id = ${userId} AND record_id = ${missionId}
      AND data -> 'iterations' @> jsonb_build_array(jsonb_build_object('id', ${iterationId}::text))`;
  const [p] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM mana_ai.mission_snapshots s, jsonb_array_elements(s.fields -> 'iterations') it
    WHERE s.user_id = ${userId} AND s.mission_id = ${missionId} AND it ->> 'id' = ${iterationId}`;
  return { rows: r!.n, projected: p!.n };
}

export interface LedgerRow {
  iterationId: string;
  missionId: string;
  status: string;
  channel: string | null;
  attempts: number;
  lastError: string | null;
}

export async function ledger(sql: Sql, userId: string): Promise<LedgerRow[]> {
  return sql<LedgerRow[]>`
    SELECT iteration_id::text AS "iterationId", mission_id AS "missionId", status, channel, attempts, last_error AS "lastError"
    FROM mana_ai.occurrences WHERE user_id = ${userId} ORDER BY created_at, iteration_id`;
}

export interface PlannableMission {
  userId: string;
  missionId: string;
  nextRunAt: string;
  title?: string;
  objective?: string;
  conceptMarkdown?: string;
}

/** Missions as mana-sync writes them, plannable by the server (daily cadence, so a plan moves nextRunAt past now). */
export async function insertPlannable(sql: Sql, missions: PlannableMission[]): Promise<void> {
  const rows = missions.map((m) => ({
    u: m.userId,
    r: m.missionId,
    d: {
      id: m.missionId,
      title: m.title ?? `Mission ${m.missionId}`,
      objective: m.objective ?? 'Keep the garden alive',
      conceptMarkdown: m.conceptMarkdown ?? 'One small step a day.',
      inputs: [],
      cadence: { kind: 'daily', atHour: 9, atMinute: 0 },
      state: 'active',
      iterations: [],
      nextRunAt: m.nextRunAt,
    },
  }));
  await sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, origin)
    SELECT 'ai', 'aiMissions', r, u, 'insert', d, 'device-1', 'user'
    FROM jsonb_to_recordset(${sql.json(rows as never)}::jsonb) AS x(u text, r text, d jsonb)`;
}

/** PUT a push subscription for the device; returns the HTTP status and body. */
export async function putSubscription(
  baseUrl: string,
  token: string,
  deviceId: string,
  sub: { endpoint: string; keys: { p256dh: string; auth: string } },
): Promise<{ status: number; body: { error?: { code: string; message: string } } }> {
  const res = await fetch(`${baseUrl}/v1/devices/${deviceId}/push-subscription`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(sub),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
}
