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
/** `at` (default now()): a canonical instant, bound as text so its microseconds survive. */
export async function findDueMissions(sql: Sql, opts: { limit: number; unhandledOnly?: boolean; at?: string }): Promise<DueMission[]> {
  // unhandledOnly: skip missions whose occurrence for this nextRunAt exists, so a
  // backlog that stays due for minutes is not re-dispatched every pass.
  return sql<DueMission[]>`
    SELECT s.user_id AS "userId", s.mission_id AS "missionId",
           to_char(s.next_run_at AT TIME ZONE 'UTC', ${sql.unsafe(TS)}) AS "nextRunAt"
    FROM mana_ai.mission_snapshots s
    WHERE s.present AND NOT s.soft_deleted AND s.state = 'active' AND s.next_run_at IS NOT NULL
      AND s.next_run_at <= coalesce(${opts.at ?? null}::text::timestamptz, now())
      AND (${opts.unhandledOnly ?? false} = false OR NOT EXISTS (
        SELECT 1 FROM mana_ai.occurrences o
        WHERE o.user_id = s.user_id AND o.mission_id = s.mission_id AND o.due_at = s.next_run_at))
    -- A user's missions due at one instant stay in one batch (one push names them all).
    ORDER BY s.next_run_at, s.user_id
    LIMIT ${opts.limit}`;
}

/**
 * The earliest nextRunAt after `after` (default: now), so the scheduler can
 * wake exactly then. Give it the instant the due scan used: a mission that
 * fell due while the pass ran then comes back as already due (→ run again at
 * once) instead of being skipped until the next interval.
 */
export async function nextDueAt(sql: Sql, after?: string): Promise<Date | null> {
  // Missions whose occurrence exists already (created ahead, armed in the router) need no pass.
  const [row] = await sql<{ at: Date | null }[]>`
    SELECT s.next_run_at AS at FROM mana_ai.mission_snapshots s
    WHERE s.present AND NOT s.soft_deleted AND s.state = 'active' AND s.next_run_at IS NOT NULL
      AND s.next_run_at > coalesce(${after ?? null}::text::timestamptz, now())
      AND NOT EXISTS (
        SELECT 1 FROM mana_ai.occurrences o
        WHERE o.user_id = s.user_id AND o.mission_id = s.mission_id AND o.due_at = s.next_run_at)
    ORDER BY s.next_run_at
    LIMIT 1`;
  return row?.at ?? null;
}

/**
 * Missions falling due in (after, until] that have no occurrence yet, so the
 * router can create them ahead and send their nudges from a timer at the due
 * instant, with no database work left on that path. Only users with a
 * presence row (a socket on some instance; the router checks its heartbeat):
 * nobody else is readied ahead, and at the top of an hour the 10,000 users
 * with a socket must not queue behind 90,000 without one.
 */
export async function findUpcomingMissions(sql: Sql, opts: { after: string; until: string; limit: number }): Promise<DueMission[]> {
  return sql<DueMission[]>`
    SELECT s.user_id AS "userId", s.mission_id AS "missionId",
           to_char(s.next_run_at AT TIME ZONE 'UTC', ${sql.unsafe(TS)}) AS "nextRunAt"
    FROM mana_ai.mission_snapshots s
    WHERE s.present AND NOT s.soft_deleted AND s.state = 'active' AND s.next_run_at IS NOT NULL
      AND s.next_run_at > ${opts.after}::text::timestamptz
      AND s.next_run_at <= ${opts.until}::text::timestamptz
      AND EXISTS (SELECT 1 FROM mana_ai.presence p WHERE p.user_id = s.user_id)
      AND NOT EXISTS (
        SELECT 1 FROM mana_ai.occurrences o
        WHERE o.user_id = s.user_id AND o.mission_id = s.mission_id AND o.due_at = s.next_run_at)
    ORDER BY s.next_run_at
    LIMIT ${opts.limit}`;
}
