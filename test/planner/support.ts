/**
 * Helpers for the server-planning integration tests: a coordinator whose log
 * lines are captured, missions written as mana-sync would write them, and
 * readers for what the planner wrote (runner rows, projected missions,
 * occurrences).
 */
import type { Coordinator } from '../../src/coordinator.js';
import type { Sql } from '../../src/db/pool.js';
import { seedMissions, startTestCoordinator, type TestCoordinator } from '../support/coordinator.js';
import { getMission } from '../../src/projection/missions.js';
import type { Mission, MissionIteration } from '../../src/projection/mission.js';
import { RUNNER_CLIENT_ID } from '../../src/planner/writeback.js';

export { inMs, sleep, waitFor } from '../support/coordinator.js';

export type { LogLine } from '../support/coordinator.js';

/** A test coordinator whose log is captured (see test/support/coordinator.ts). */
export type PlanningCoordinator = TestCoordinator;

export const SERVICE_KEY = 'test-service-key-123';

/** Starts a coordinator on `sql` with its log captured and quick planner retries; pass MANA_LLM_URL for server planning. */
export async function startPlanningCoordinator(sql: Sql, env: Record<string, string> = {}): Promise<PlanningCoordinator> {
  return startTestCoordinator(
    sql,
    { MANA_SERVICE_KEY: SERVICE_KEY, PLANNER_RETRY_BACKOFF_MS: '100,100', PLANNER_TIMEOUT_MS: '5000', ...env },
    { capture: process.env['TEST_LOG'] ?? 'info' },
  );
}

export interface MissionSpec {
  userId: string;
  missionId: string;
  nextRunAt: string;
  title?: string;
  objective?: string;
  conceptMarkdown?: string;
  cadence?: Record<string, unknown>;
  iterations?: unknown[];
  inputs?: unknown[];
}

/** Writes missions as mana-sync rows (op insert, the whole record), in one statement. */
export async function insertPlannableMissions(sql: Sql, missions: MissionSpec[]): Promise<void> {
  await seedMissions(
    sql,
    missions.map((m) => ({ ...m, objective: m.objective ?? 'Finish the quarterly report' })),
    { clientId: 'device-1' },
  );
}

export interface RunnerRow {
  id: string;
  userId: string;
  recordId: string;
  op: string;
  data: { iterations: MissionIteration[]; nextRunAt?: string | null };
  /** Field → the ISO stamp it was written with (mana-sync's string map). */
  fieldMeta: Record<string, string>;
  actor: unknown;
  origin: string | null;
  clientId: string;
}

/** The rows the server planner wrote to sync_changes, oldest first. */
export async function runnerRows(sql: Sql, userId?: string): Promise<RunnerRow[]> {
  return sql<RunnerRow[]>`
    SELECT id::text, user_id AS "userId", record_id AS "recordId", op, data, field_meta AS "fieldMeta", actor, origin, client_id AS "clientId"
    FROM sync_changes
    WHERE client_id = ${RUNNER_CLIENT_ID} AND (${userId ?? null}::text IS NULL OR user_id = ${userId ?? null})
    ORDER BY created_at, id`;
}

/** The mission as the projection has it now. */
export async function projected(sql: Sql, userId: string, missionId: string): Promise<Mission | null> {
  return getMission(sql, userId, missionId);
}

export interface OccurrenceRow {
  iterationId: string;
  userId: string;
  missionId: string;
  status: string;
  channel: string | null;
  claimedBy: string | null;
  attempts: number;
  lastError: string | null;
  reason: string | null;
  repairs: number;
}

export async function occurrenceRows(sql: Sql, userId?: string): Promise<OccurrenceRow[]> {
  return sql<OccurrenceRow[]>`
    SELECT iteration_id::text AS "iterationId", user_id AS "userId", mission_id AS "missionId", status, channel,
           claimed_by AS "claimedBy", attempts, last_error AS "lastError", reason, repairs
    FROM mana_ai.occurrences WHERE (${userId ?? null}::text IS NULL OR user_id = ${userId ?? null})
    ORDER BY created_at, iteration_id`;
}

/** The next 09:00 UTC strictly after `after` (the daily cadence the test missions use). */
export function nextNineUtc(after: Date): string {
  const d = new Date(Date.UTC(after.getUTCFullYear(), after.getUTCMonth(), after.getUTCDate(), 9, 0, 0, 0));
  if (d.getTime() <= after.getTime()) d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString();
}

/** A metric's value from the coordinator's registry (summed over labels matching `labels`). */
export async function metricValue(c: Coordinator, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = c.metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  return data.values
    .filter((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}
