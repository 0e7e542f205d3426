/**
 * The due scan: one query on the partial index of mission_snapshots.
 */
import type { Sql } from '../db/pool.js';

export interface DueMission {
  userId: string;
  missionId: string;
  /** The mission's nextRunAt, canonical UTC with microseconds. */
  nextRunAt: string;
}

const TS = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

/** Due missions, oldest first. The WHERE clause must match the partial index predicate. */
export async function findDueMissions(sql: Sql, opts: { limit: number }): Promise<DueMission[]> {
  return sql<DueMission[]>`
    SELECT user_id AS "userId", mission_id AS "missionId",
           to_char(next_run_at AT TIME ZONE 'UTC', ${sql.unsafe(TS)}) AS "nextRunAt"
    FROM mana_ai.mission_snapshots
    WHERE present AND NOT soft_deleted AND state = 'active' AND next_run_at IS NOT NULL
      AND next_run_at <= now()
    ORDER BY next_run_at
    LIMIT ${opts.limit}`;
}

/** The earliest nextRunAt still in the future, so the scheduler can wake exactly then. */
export async function nextDueAt(sql: Sql): Promise<Date | null> {
  const [row] = await sql<{ at: Date | null }[]>`
    SELECT min(next_run_at) AS at FROM mana_ai.mission_snapshots
    WHERE present AND NOT soft_deleted AND state = 'active' AND next_run_at IS NOT NULL
      AND next_run_at > now()`;
  return row?.at ?? null;
}
