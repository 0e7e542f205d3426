/**
 * Reading aiMissions rows from sync_changes. The table belongs to mana-sync:
 * we only read it, and adapt to the metadata column(s) this deployment has
 * (older: field_timestamps; newer: field_meta; some have both).
 */
import type { Sql, TxSql } from '../db/pool.js';
import { materialize, normalizeRow, replay, type ChangeRow } from './lww.js';

export interface SyncColumns {
  fieldTimestamps: boolean;
  fieldMeta: boolean;
  /** Newer deployments also record who wrote a row and from where. */
  actor: boolean;
  origin: boolean;
}

export const MISSIONS = { appId: 'ai', tableName: 'aiMissions' } as const;

/** Which metadata columns sync_changes has; read once at start. */
export async function detectSyncColumns(sql: Sql | TxSql): Promise<SyncColumns> {
  const rows = await sql<{ name: string }[]>`
    SELECT column_name AS name FROM information_schema.columns
    WHERE table_name = 'sync_changes' AND table_schema = current_schema()`;
  const names = new Set(rows.map((r) => r.name));
  if (!names.has('id')) throw new Error('sync_changes not found in the current schema (expected mana-sync\'s change log)');
  return { fieldTimestamps: names.has('field_timestamps'), fieldMeta: names.has('field_meta'), actor: names.has('actor'), origin: names.has('origin') };
}

/** The select list shared by every read of change rows; created_at as fixed-width UTC text. */
export function changeColumns(sql: Sql | TxSql, cols: SyncColumns) {
  return sql.unsafe(`
    id::text AS id, user_id AS "userId", record_id AS "recordId", op, data,
    ${cols.fieldTimestamps ? 'field_timestamps' : 'NULL::jsonb'} AS "fieldTimestamps",
    ${cols.fieldMeta ? 'field_meta' : 'NULL::jsonb'} AS "fieldMeta",
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "createdAt"`);
}

/** Every row of one record (a mission by default), for a rebuild after a late delete. */
export async function recordRows(
  tx: Sql | TxSql,
  cols: SyncColumns,
  userId: string,
  recordId: string,
  table: { appId: string; tableName: string } = MISSIONS,
): Promise<ChangeRow[]> {
  return tx<ChangeRow[]>`
    SELECT ${changeColumns(tx, cols)} FROM sync_changes
    WHERE table_name = ${table.tableName} AND record_id = ${recordId}
      AND app_id = ${table.appId} AND user_id = ${userId}`;
}

/**
 * One record as the committed log has it right now, replayed with lww.ts:
 * fresher than the projection, which lags by up to a pass. Null when deleted.
 */
export async function currentRecord(
  tx: Sql | TxSql,
  cols: SyncColumns,
  userId: string,
  recordId: string,
  table: { appId: string; tableName: string } = MISSIONS,
): Promise<Record<string, unknown> | null> {
  const changes = (await recordRows(tx, cols, userId, recordId, table))
    .map(normalizeRow)
    .flatMap((n) => (n.ok ? [n.change] : []));
  return materialize(replay(userId, recordId, changes));
}

/** What a pass reads: rows at or above the horizon whose ids it has not applied yet. */
export interface ChangeWindow {
  horizon: string;
  appliedIds: string[];
}

/** A row the database found superseded by a later delete of its record, read in the same statement. */
export interface SupersededRow {
  id: string;
  createdAt: string;
}

export interface StreamOptions {
  batchRows: number;
  /**
   * A big backlog: deletes first, then the other rows, those older than their
   * record's last delete without their data (see streamChanges).
   */
  bulk?: boolean;
  /** Only records whose id hashes to `index` of `count` (a bulk pass split to bound its cache). */
  partition?: { count: number; index: number };
}

const CREATED_AT_TEXT = `to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
/** (user_id, record_id) as one collision-free text: the length prefix makes it decode uniquely. */
const RECORD_KEY = `length(s.user_id)::text || ':' || s.user_id || s.record_id`;

/**
 * One JSON text per row — [id, user_id, record_id, op, data, field_timestamps,
 * field_meta, created_at] — so postgres.js decodes one column per row and
 * JSON.parse does the rest in one call: about half the client CPU of eight
 * typed columns. The values are exactly what changeColumns() yields.
 */
function rowJson(cols: SyncColumns): string {
  return `json_build_array(s.id, s.user_id, s.record_id, s.op, s.data,
    ${cols.fieldTimestamps ? 's.field_timestamps' : 'NULL::jsonb'}, ${cols.fieldMeta ? 's.field_meta' : 'NULL::jsonb'},
    ${CREATED_AT_TEXT})::text`;
}

/** A rowJson() text as a ChangeRow, or a two-element one as a SupersededRow. */
function parseRowJson(text: string): ChangeRow | SupersededRow {
  const a = JSON.parse(text) as unknown[];
  if (a.length === 2) return { id: a[0] as string, createdAt: a[1] as string };
  return {
    id: a[0] as string,
    userId: a[1] as string,
    recordId: a[2] as string,
    op: a[3],
    data: a[4],
    fieldTimestamps: a[5],
    fieldMeta: a[6],
    createdAt: a[7] as string,
  };
}

let cursorSeq = 0;

/**
 * Streams the window's rows in heap order (no sort) to onBatch, through a
 * DECLAREd cursor and FETCH rather than postgres.js' .cursor(): the batch
 * handler queries the same transaction's connection, and a query issued while
 * a postgres.js cursor is suspended waits behind it forever.
 *
 * Bulk: one statement, two heap scans. First the deletes, so a record's later
 * rows never arrive before its delete (which would ask for a rebuild); then
 * every other row, those created before their record's last delete in this
 * window as [id, created_at] only: once that delete is applied they cannot
 * change anything (the contract replays a record from its last delete), yet
 * they still count as read. Only deletes whose created_at the projection can
 * parse (years 1–9999) supersede anything. The delete list is grouped in a
 * subquery so the planner knows its key is unique and hashes it, not the log.
 */
export async function streamChanges(
  tx: TxSql,
  cols: SyncColumns,
  window: ChangeWindow,
  opts: StreamOptions,
  onBatch: (rows: ChangeRow[], superseded: SupersededRow[]) => Promise<void>,
): Promise<void> {
  const where = tx`
    s.app_id = ${MISSIONS.appId} AND s.table_name = ${MISSIONS.tableName}
    -- As text: postgres.js turns a string bound to timestamptz into a JS Date,
    -- dropping the horizon's microseconds, and rows just below it were re-read.
    -- A bulk pass scans the table: there the cast (only stable) goes into a
    -- subquery, or it would run again for every row; the window query keeps it
    -- inline, where the planner sees the value and picks the index.
    AND s.created_at >= ${opts.bulk ? tx`(SELECT ${window.horizon}::text::timestamptz)` : tx`${window.horizon}::text::timestamptz`}
    AND NOT (s.id = ANY(${window.appliedIds}::uuid[]))
    ${opts.partition && opts.partition.count > 1 ? tx`AND abs(hashtext(s.record_id) % ${opts.partition.count}::int) = ${opts.partition.index}::int` : tx``}`;
  const name = tx.unsafe(`refresh_rows_${++cursorSeq}`);
  const row = tx.unsafe(rowJson(cols));
  if (opts.bulk) {
    // The planner cannot see how many rows the partition filter and the horizon subquery
    // keep; underestimating them, it re-scans the delete list for every row of the log
    // (a nested loop: minutes instead of seconds). The hash join is right at any size.
    await tx`SET LOCAL enable_nestloop = off`;
    await tx`
      DECLARE ${name} NO SCROLL CURSOR FOR
      WITH deletes AS MATERIALIZED (
        SELECT ${row} AS r, ${tx.unsafe(RECORD_KEY)} AS k, s.created_at FROM sync_changes s WHERE ${where} AND s.op = 'delete')
      SELECT r FROM deletes
      UNION ALL
      SELECT CASE WHEN d.at > s.created_at THEN json_build_array(s.id, ${tx.unsafe(CREATED_AT_TEXT)})::text ELSE ${row} END
      FROM sync_changes s
      LEFT JOIN (
        SELECT k, max(created_at) AS at FROM deletes
        WHERE created_at >= '0001-01-01T00:00:00Z' AND created_at < '10000-01-01T00:00:00Z'
        GROUP BY k) d ON d.k = ${tx.unsafe(RECORD_KEY)}
      WHERE ${where} AND s.op IS DISTINCT FROM 'delete'`;
    await tx`SET LOCAL enable_nestloop TO DEFAULT`;
  } else {
    await tx`DECLARE ${name} NO SCROLL CURSOR FOR SELECT ${row} AS r FROM sync_changes s WHERE ${where}`;
  }
  const fetch = () => {
    const q = tx<{ r: string }[]>`FETCH ${tx.unsafe(String(opts.batchRows))} FROM ${name}`;
    q.catch(() => undefined); // the await below sees the error; never an unhandled rejection
    return q;
  };
  try {
    // One FETCH always in flight: Postgres computes the next batch while this
    // process merges the current one (any query onBatch makes queues behind it).
    let next = fetch();
    for (;;) {
      const batch = await next;
      if (batch.length === 0) break;
      next = fetch();
      const rows: ChangeRow[] = [];
      const superseded: SupersededRow[] = [];
      for (const { r } of batch) {
        const parsed = parseRowJson(r);
        if ('userId' in parsed) rows.push(parsed);
        else superseded.push(parsed);
      }
      await onBatch(rows, superseded);
    }
  } finally {
    await tx`CLOSE ${name}`.catch(() => undefined);
  }
}

/**
 * About how many aiMissions records have rows at or above the horizon (an
 * index-only scan counting distinct record ids): sizes a bulk pass's partitions.
 */
export async function estimateRecords(tx: TxSql, horizon: string): Promise<number> {
  const [row] = await tx<{ n: number }[]>`
    SELECT count(*)::int AS n FROM (
      SELECT DISTINCT record_id FROM sync_changes
      WHERE table_name = ${MISSIONS.tableName} AND created_at >= ${horizon}::text::timestamptz) q`;
  return row?.n ?? 0;
}

/** The data of the given rows by id (rows since removed from the log are simply absent). */
export async function rowData(tx: TxSql, ids: string[]): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  if (ids.length === 0) return out;
  const rows = await tx<{ id: string; data: unknown }[]>`SELECT id::text AS id, data FROM sync_changes WHERE id = ANY(${ids}::uuid[])`;
  for (const r of rows) out.set(r.id, r.data);
  return out;
}

