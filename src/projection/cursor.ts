/**
 * The projection's cursor (mana_ai.projection_cursor): the horizon below
 * which every row is applied, and the applied set, the positions
 * ("created_at|id") of the rows at or above it that are applied already.
 *
 * The pruning rule lives here, once: a position stays in the applied set
 * while its created_at is at or above the horizon. Positions compare as
 * text, which orders them as instants only while created_at has four year
 * digits; a row stamped beyond 9999 is in the future, so it stays tracked
 * (never read again). A pass that reads rows prunes in memory (`keepsRow`);
 * one that reads nothing prunes in place (`writeCursor` without `applied`),
 * where the same rule is spelled in SQL (`keptSql`, text compared as bytes
 * as JavaScript compares it).
 */
import type { TxSql } from '../db/pool.js';
import { MIN_INSTANT } from './instant.js';

/** One cursor for every projected table: one pass reads them from one window. */
const CURSOR_NAME = 'ai';

export interface Cursor {
  horizon: string;
  exists: boolean;
}

/** The applied-set rule for a row: kept while its created_at is at or above `horizon`, or beyond year 9999. */
export function keepsRow(horizon: string): (createdAt: string) => boolean {
  return (createdAt) => createdAt >= horizon || createdAt.length > horizon.length;
}

/** The applied-set rule for a stored position ("created_at|id"). */
export function keepsPosition(horizon: string): (position: string) => boolean {
  const keeps = keepsRow(horizon);
  return (p) => keeps(p.slice(0, p.indexOf('|')));
}

/** keepsPosition in SQL, over a position `p`. */
const keptSql = (tx: TxSql, horizon: string) =>
  tx`split_part(p, '|', 1) COLLATE "C" >= ${horizon} OR length(split_part(p, '|', 1)) > length(${horizon})`;

/**
 * Takes the refresh lock `lockKey` if no other transaction holds it and,
 * only then, the cursor, locked for this pass (a fresh database starts at
 * the earliest instant); null when another pass holds the lock. One
 * statement, so the pass's other opening statements go with it: the row
 * lock is never waited for behind another instance's pass.
 */
export async function lockCursor(tx: TxSql, lockKey: string): Promise<Cursor | null> {
  // OFFSET 0: the lock is taken once, before the cursor's row is looked at.
  const [row] = await tx<{ ok: boolean; horizon: string | null }[]>`
    SELECT l.ok, c.horizon
    FROM (SELECT pg_try_advisory_xact_lock(hashtext(${lockKey})) AS ok OFFSET 0) AS l
    LEFT JOIN LATERAL (SELECT horizon FROM mana_ai.projection_cursor WHERE l.ok AND name = ${CURSOR_NAME} FOR UPDATE) AS c ON true`;
  if (!row?.ok) return null;
  return row.horizon !== null ? { horizon: row.horizon, exists: true } : { horizon: MIN_INSTANT, exists: false };
}

/** The applied set: read only by a pass that reads rows (thousands of positions when rows arrive fast). */
export async function readApplied(tx: TxSql): Promise<string[]> {
  const [row] = await tx<{ applied: string[] }[]>`SELECT applied FROM mana_ai.projection_cursor WHERE name = ${CURSOR_NAME}`;
  return row?.applied ?? [];
}

/**
 * Moves the cursor to `horizon` and returns the writing transaction's id.
 * With `applied` (a pass that read rows) that list is stored as it is; without
 * (a pass that read nothing) the stored list is pruned in place, and assigned
 * as stored when nothing falls below the horizon, which keeps its TOAST
 * pointer instead of rewriting it.
 */
export async function writeCursor(tx: TxSql, to: { horizon: string; exists: boolean; applied?: string[] }): Promise<string | undefined> {
  let written: { xid: string } | undefined;
  if (to.applied === undefined && to.exists) {
    const kept = keptSql(tx, to.horizon);
    [written] = await tx<{ xid: string }[]>`
      UPDATE mana_ai.projection_cursor SET horizon = ${to.horizon},
        applied = CASE WHEN EXISTS (SELECT 1 FROM unnest(applied) AS p WHERE NOT (${kept}))
                  THEN ARRAY(SELECT p FROM unnest(applied) AS p WHERE ${kept}) ELSE applied END,
        updated_at = now()
      WHERE name = ${CURSOR_NAME}
      RETURNING pg_current_xact_id()::text AS xid`;
  } else {
    [written] = await tx<{ xid: string }[]>`
      INSERT INTO mana_ai.projection_cursor (name, horizon, applied, updated_at)
      VALUES (${CURSOR_NAME}, ${to.horizon}, ${to.applied ?? []}::text[], now())
      ON CONFLICT (name) DO UPDATE SET horizon = excluded.horizon, applied = excluded.applied, updated_at = now()
      RETURNING pg_current_xact_id()::text AS xid`;
  }
  return written?.xid;
}
