/**
 * The SQL fast path: Postgres merges a pass's rows into stored views
 * without loading them. It is lww.ts's merge for the case where it is an
 * order-independent maximum — a present view whose stamps are all plain,
 * taking plain rows that are not hard deletes and lie after its first
 * present-making row — so the database needs no more than a byte-wise
 * comparison of versions (stamp.ts; `COLLATE "C"`). And for a stored view
 * that is absent (removed by a hard delete, say), taking data rows only,
 * all after every row it holds: the earliest of them makes it present,
 * and with no fields stored the same maximum is the webapp's result (its
 * first row's fields, then every later write that wins).
 * test/projection/merge-deltas.property.test.ts holds it to lww.ts.
 */
import type { Sql, TxSql } from '../db/pool.js';
import { deltaOf, type RecordState } from './lww.js';
import { byTable, derivedColumns, setOwn } from './snapshot-store.js';
import { viewKey } from './views.js';
import type { Change } from './wire.js';

/** One view's rows of one pass, merged among themselves (lww.ts deltaOf). */
export interface Delta {
  state: RecordState;
  /** The earliest of those rows' positions. */
  minPos: string;
  /** Who wrote the earliest row, when every row is data (none a soft delete): a stored absent view may then be merged too. */
  firstUser?: string;
}

/** One view's rows of one pass (plain, none a hard delete: lww.ts mergeableInSql) as a delta. */
export function deltaFor(tableName: string, userId: string, recordId: string, changes: Change[]): Delta {
  let first = changes[0]!;
  let allData = true;
  for (const c of changes) {
    if (c.pos < first.pos) first = c;
    if (c.kind !== 'data') allData = false;
  }
  const state = deltaOf(tableName, userId, recordId, changes);
  return allData ? { state, minPos: first.pos, firstUser: first.userId } : { state, minPos: first.pos };
}

/**
 * A delta as mergeDeltas sends it, in few bytes (the JSON is most of a
 * pass's write-back, and Postgres parses it all): short keys, one version
 * `t` for all fields when they share it (almost always: one row), `v` only
 * when they do not, `lo` only when it differs from `hi`, derived columns
 * only for fields the delta has.
 */
const DELTASET = `x(u text, m text, f jsonb, t text, v jsonb, lo text, hi text, fu text, st text, sd boolean, nr timestamptz, li boolean, au text, sp text)`;

/** The view's first writer once merged: an absent view becomes present with x's earliest row. */
const FIRST_USER = 'CASE WHEN s.present THEN s.first_user ELSE x.fu END';

/** The version x carries for field k. */
const versionOf = (k: string) => `coalesce(x.v ->> ${k}, x.t)`;
/** True when x's field k wins over s's (versions compared as bytes: plain versions sort so in JavaScript too). */
const wins = (k: string) => `(x.f ? '${k}' AND ${versionOf(`'${k}'`)} COLLATE "C" > coalesce(s.versions ->> '${k}', ''))`;

/**
 * Merges deltas into the stored snapshots in the database, field by field.
 * Returns the view keys it merged; the others (not stored, not plain, with
 * a row at or before their first present-making row, or absent and not
 * taking only data rows after all it holds) are for the caller to load and
 * merge itself.
 */
export async function mergeDeltas(tx: Sql | TxSql, deltas: Delta[]): Promise<{ merged: Set<string> }> {
  const merged = new Set<string>();
  for (const [table, list] of byTable(deltas, (d) => d.state.tableName)) {
    const json = JSON.stringify(
      list.map(({ state: s, minPos, firstUser }) => {
        const f: Record<string, unknown> = {};
        const v: Record<string, string> = {};
        let t: string | undefined;
        let shared = true;
        for (const [k, fv] of s.fields) {
          setOwn(f, k, fv.value);
          setOwn(v, k, fv.version);
          t ??= fv.version;
          if (fv.version !== t) shared = false;
        }
        // firstUser is the stored one (the delta's rows all come after the first): the SQL falls back to it.
        const d = derivedColumns({ ...s, firstUser: null });
        const has = (k: string) => s.fields.has(k);
        return {
          u: s.userId,
          m: s.recordId,
          f,
          t,
          v: shared ? undefined : v,
          lo: minPos === s.maxPos ? undefined : minPos,
          hi: s.maxPos,
          fu: firstUser,
          st: has('state') ? d.state : undefined,
          sd: has('deletedAt') ? d.soft_deleted : undefined,
          nr: has('nextRunAt') ? d.next_run_at : undefined,
          li: has('createdAt') ? d.listed : undefined,
          au: has('authorId') ? d.author : undefined,
          sp: has('spaceId') ? d.space_id : undefined,
        };
      }),
    );
    const rows = await tx<{ userId: string; recordId: string }[]>`
      UPDATE ${tx.unsafe(table.snapshots)} s SET
        (fields, versions) = (
          SELECT s.fields || coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb),
                 s.versions || coalesce(jsonb_object_agg(e.key, ${tx.unsafe(versionOf('e.key'))}), '{}'::jsonb)
          FROM jsonb_each(x.f) e
          WHERE ${tx.unsafe(versionOf('e.key'))} COLLATE "C" > coalesce(s.versions ->> e.key, '')),
        max_pos = CASE WHEN s.max_pos IS NULL OR x.hi COLLATE "C" > s.max_pos THEN x.hi ELSE s.max_pos END,
        present = true,
        first_pos = CASE WHEN s.present THEN s.first_pos ELSE coalesce(x.lo, x.hi) END,
        first_user = ${tx.unsafe(FIRST_USER)},
        -- The derived columns change only with the field they come from; an absent view has
        -- none stored, and its author is its first writer until a row names one.
        state = CASE WHEN ${tx.unsafe(wins('state'))} THEN x.st ELSE s.state END,
        soft_deleted = CASE WHEN ${tx.unsafe(wins('deletedAt'))} THEN x.sd ELSE s.soft_deleted END,
        next_run_at = CASE WHEN ${tx.unsafe(wins('nextRunAt'))} THEN x.nr ELSE s.next_run_at END,
        listed = CASE WHEN ${tx.unsafe(wins('createdAt'))} THEN x.li ELSE s.listed END,
        author = CASE WHEN ${tx.unsafe(wins('authorId'))} THEN coalesce(x.au, ${tx.unsafe(FIRST_USER)})
                      WHEN s.present THEN s.author ELSE x.fu END,
        space_id = CASE WHEN ${tx.unsafe(wins('spaceId'))} THEN x.sp ELSE s.space_id END,
        updated_at = now()
      FROM jsonb_to_recordset(${json}::text::jsonb) AS ${tx.unsafe(DELTASET)}
      WHERE s.user_id = x.u AND s.${tx.unsafe(table.idColumn)} = x.m
        AND s.plain AND CASE WHEN s.present THEN coalesce(x.lo, x.hi) COLLATE "C" > s.first_pos
          ELSE x.fu IS NOT NULL AND coalesce(x.lo, x.hi) COLLATE "C" > coalesce(s.max_pos, '') END
      RETURNING s.user_id AS "userId", s.${tx.unsafe(table.idColumn)} AS "recordId"`;
    for (const r of rows) merged.add(viewKey(table.tableName, r.userId, r.recordId));
  }
  return { merged };
}
