/**
 * The harness every suite starts a coordinator with: in this process
 * (`startTestCoordinator`, here) or as a child process
 * (`startChild`, child-coordinator.ts), both from the same test
 * defaults (`TEST_ENV`). Also: a real `ws` client that authenticates and
 * records every frame (ws-client.ts), and the mission seeder
 * (missions.ts), re-exported so a suite imports one module.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { loadConfig } from '../../src/config.js';
import { startCoordinator, type Coordinator } from '../../src/coordinator.js';
import type { Sql } from '../../src/db/pool.js';
import type { FallbackPlanner, PushChannel } from '../../src/nudge/router.js';
import type { Occurrence } from '../../src/schedule/occurrence.js';
import { seedMissions } from './missions.js';
import { scrapeMetrics, type MetricSamples } from './metrics.js';
import { TEST_ENV } from './test-env.js';

export { TEST_ENV } from './test-env.js';
export { killAllChildren, startChild, type ChildCoordinator } from './child-coordinator.js';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface TestCoordinator extends Coordinator {
  wsUrl: string;
  /** A dev-default HS256 token for the user, from POST /dev/token. */
  token(userId: string): Promise<string>;
  /** Raw pino lines, as written (empty unless the log is captured). */
  lines: string[];
  /** The same lines, parsed. */
  logs: LogLine[];
  records(): Record<string, unknown>[];
  /** Lines at warn (40) or above whose message contains `text`. */
  warnings(text: string): LogLine[];
  /** GET /metrics, parsed, as a scraper reads it. */
  scrape(): Promise<MetricSamples>;
}

export interface TestCoordinatorOptions {
  fallback?: FallbackPlanner;
  push?: PushChannel;
  /** Capture pino output at this level (TEST_LOG also echoes it); default: nothing logged. */
  capture?: string;
  /** Log here instead of capturing (the e2e stack writes a file). */
  log?: Logger;
}

/** Starts a coordinator on `sql`; env entries override TEST_ENV. */
export async function startTestCoordinator(sql: Sql, env: Record<string, string> = {}, opts: TestCoordinatorOptions = {}): Promise<TestCoordinator> {
  const config = loadConfig({ ...TEST_ENV, ...env });
  const lines: string[] = [];
  const logs: LogLine[] = [];
  const echo = process.env['TEST_LOG'];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        lines.push(line);
        logs.push(JSON.parse(line) as LogLine);
        if (echo) process.stdout.write(`${line}\n`);
      }
      done();
    },
  });
  const log = opts.log ?? pino({ level: opts.capture ?? echo ?? 'silent' }, sink);
  const c = await startCoordinator({ config, sql, log, ...(opts.fallback ? { fallback: opts.fallback } : {}), ...(opts.push ? { push: opts.push } : {}) });
  return {
    ...c,
    wsUrl: `${c.url.replace(/^http/, 'ws')}/v1/ws`,
    async token(userId) {
      const res = await fetch(`${c.url}/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId }) });
      if (res.status !== 200) throw new Error(`POST /dev/token answered ${res.status}`);
      return ((await res.json()) as { token: string }).token;
    },
    lines,
    logs,
    records: () => logs,
    warnings: (text) => logs.filter((l) => l.level >= 40 && typeof l.msg === 'string' && l.msg.includes(text)),
    scrape: () => scrapeMetrics(c.url),
  };
}

/** A fallback planner that records what it was handed and never finishes it. */
export interface FallbackSpy extends FallbackPlanner {
  calls: Occurrence[];
  /** Date.now() at each call, parallel to `calls`. */
  times: number[];
}

export function createFallbackSpy(): FallbackSpy {
  const calls: Occurrence[] = [];
  const times: number[] = [];
  return {
    enabled: true,
    calls,
    times,
    plan(occ) {
      calls.push(occ);
      times.push(Date.now());
    },
  };
}

export { connectClient, openSocket, type WsClient } from './ws-client.js';

export interface MissionRow {
  userId: string;
  missionId: string;
  /** ISO instant, or null for no next run. */
  nextRunAt: string | null;
  state?: 'active' | 'paused' | 'done' | 'archived';
  iterations?: { id: string; [k: string]: unknown }[];
}

/** Inserts missions with a manual cadence (no next run after a plan), all in one statement. */
export async function insertMissions(sql: Sql, missions: MissionRow[]): Promise<void> {
  await seedMissions(
    sql,
    missions.map((m) => ({ ...m, title: `mission ${m.missionId}`, cadence: { kind: 'manual' } })),
  );
}

export { missionRecord, seedMissions, seedRecords, updateMission, type MissionSeed, type RawRecordRow, type SeedOptions } from './missions.js';
export { sleep, waitFor } from './wait.js';

/** An ISO instant ms from now (negative: in the past). */
export const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();

/** The occurrence rows of a user, as the ledger holds them. */
export async function occurrencesOf(
  sql: Sql,
  userId: string,
): Promise<{ iterationId: string; missionId: string; status: string; channel: string | null; claimedBy: string | null; lastError: string | null; reason: string | null }[]> {
  return sql`
    SELECT iteration_id::text AS "iterationId", mission_id AS "missionId", status, channel, claimed_by AS "claimedBy", last_error AS "lastError", reason
    FROM mana_ai.occurrences WHERE user_id = ${userId} ORDER BY created_at, iteration_id`;
}

/** The dev-mode HS256 secret the coordinators on this database sign tokens with (to mint odd tokens in tests). */
export async function devSecretOf(sql: Sql): Promise<Uint8Array> {
  const [row] = await sql<{ value: string }[]>`SELECT value FROM mana_ai.settings WHERE key = 'dev_jwt_secret'`;
  if (!row) throw new Error('no dev_jwt_secret setting: start a dev-mode coordinator on this database first');
  return Buffer.from(row.value, 'base64');
}
