/**
 * Where the projection may safely stop looking back.
 *
 * created_at is the writer's transaction START, so a row can commit long
 * after rows with later created_at values. Every row with created_at below
 * the horizon is known to be committed and applied; rows at or above it are
 * tracked by id. The horizon never passes the start of the oldest
 * transaction still open in this database (it could still insert rows
 * stamped with its start time), read from pg_stat_activity BEFORE the rows
 * are read, so anything that commits in between is still above it.
 */
import type { TxSql } from '../db/pool.js';

/** Slack for a transaction that has started but not yet shown up in pg_stat_activity. */
export const HORIZON_SAFETY_MS = 2000;

export interface HorizonReading {
  /** The candidate horizon (canonical instant), or null when open transactions cannot be seen. */
  horizon: string | null;
  oldestOpenXactStart: string | null;
}

/** True when this role can see other sessions' transaction start times. */
export async function canSeeAllTransactions(tx: TxSql): Promise<boolean> {
  const [row] = await tx<{ ok: boolean }[]>`
    SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
        OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS ok`;
  return Boolean(row?.ok);
}

export async function readHorizon(tx: TxSql, visible: boolean): Promise<HorizonReading> {
  const [row] = await tx<{ horizon: string; oldest: string | null }[]>`
    WITH open AS (
      SELECT min(xact_start) AS oldest FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
    )
    SELECT
      to_char((least(open.oldest, clock_timestamp()) - make_interval(secs => ${HORIZON_SAFETY_MS / 1000}))
              AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS horizon,
      to_char(open.oldest AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS oldest
    FROM open`;
  return { horizon: visible && row ? row.horizon : null, oldestOpenXactStart: row?.oldest ?? null };
}
