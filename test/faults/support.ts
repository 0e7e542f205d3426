/**
 * Shared by the fault, fuzz and security suites: a real coordinator on a test
 * database whose pino output is captured, /metrics read over HTTP the way an
 * operator's scraper reads it, small node:http servers that misbehave on
 * purpose, and the "exactly one plan" count over sync_changes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Sql } from '../../src/db/pool.js';
import { seedMissions, startTestCoordinator, type TestCoordinator } from '../support/coordinator.js';
import type { FallbackPlanner } from '../../src/nudge/router.js';

export const SERVICE_KEY = 'fault-suite-service-key-0123456789';

/** A test coordinator whose log is captured (see test/support/coordinator.ts). */
export type CapturedCoordinator = TestCoordinator;

/** Starts a coordinator on `sql` with pino captured at `level`, the service key above and quick planner retries; env overrides. */
export async function startCaptured(
  sql: Sql,
  env: Record<string, string> = {},
  opts: { level?: string; fallback?: FallbackPlanner } = {},
): Promise<CapturedCoordinator> {
  return startTestCoordinator(
    sql,
    { MANA_SERVICE_KEY: SERVICE_KEY, PLANNER_RETRY_BACKOFF_MS: '100,100', PLANNER_TIMEOUT_MS: '5000', ...env },
    { capture: opts.level ?? 'info', ...(opts.fallback ? { fallback: opts.fallback } : {}) },
  );
}

export { scrapeMetrics, type MetricSamples } from '../support/metrics.js';

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
  await seedMissions(sql, missions, { clientId: 'device-1' });
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
