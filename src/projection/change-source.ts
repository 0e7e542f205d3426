/**
 * Reading aiMissions rows from sync_changes. The table belongs to mana-sync:
 * we only read it, and adapt to the metadata column(s) this deployment has
 * (older: field_timestamps; newer: field_meta; some have both).
 */
import type { Sql, TxSql } from '../db/pool.js';
import { syncChanges, DEFAULT_SYNC_SCHEMA } from '../db/sync-table.js';
import { materialize, normalizeRow, replay, type ChangeRow } from './lww.js';

export interface SyncColumns {
  /** Schema of sync_changes (SYNC_SCHEMA): every read and write names it. */
  schema: string;
  fieldTimestamps: boolean;
  fieldMeta: boolean;
  /** Newer deployments also record who wrote a row and from where. */
  actor: boolean;
  origin: boolean;
}

export const MISSIONS = { appId: 'ai', tableName: 'aiMissions' } as const;

/** Which metadata columns `schema`.sync_changes has; read once at start. */
export async function detectSyncColumns(sql: Sql | TxSql, schema: string = DEFAULT_SYNC_SCHEMA): Promise<SyncColumns> {
  const rows = await sql<{ name: string }[]>`
    SELECT column_name AS name FROM information_schema.columns
    WHERE table_name = 'sync_changes' AND table_schema = ${schema}`;
  const names = new Set(rows.map((r) => r.name));
  if (!names.has('id')) {
    throw new Error(`sync_changes not found in schema "${schema}" (expected mana-sync's change log there, or no SELECT on it; set SYNC_SCHEMA to its schema)`);
  }
  return {
    schema,
    fieldTimestamps: names.has('field_timestamps'),
    fieldMeta: names.has('field_meta'),
    actor: names.has('actor'),
    origin: names.has('origin'),
  };
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
    SELECT ${changeColumns(tx, cols)} FROM ${syncChanges(tx, cols.schema)}
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
   * A big backlog: rows grouped by record, each record's in replay order,
   * those older than their record's last delete without their data (see
   * streamChanges).
   */
  bulk?: boolean;
}

const CREATED_AT_TEXT = `to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/**
 * One JSON text per row — [id, user_id, record_id, op, data, field_timestamps,
 * field_meta, created_at] — so postgres.js decodes one column per row and
 * JSON.parse does the rest in one call: about half the client CPU of eight
 * typed columns. Built by concatenation, not json_build_array (which re-renders
 * every jsonb argument: ~2 s of Postgres CPU per million rows more), and
 * created_at as to_json of the UTC timestamp rather than to_char (~1 s more);
 * parseRowJson() turns it into the fixed-width form. The values are exactly
 * what changeColumns() yields.
 */
function rowJson(cols: SyncColumns): string {
  const json = (e: string) => `coalesce(${e}, 'null')`;
  return `'[' || ${json('to_json(s.id)::text')} || ',' || ${json('to_json(s.user_id)::text')} || ',' || ${json('to_json(s.record_id)::text')}
    || ',' || ${json('to_json(s.op)::text')} || ',' || ${json('s.data::text')}
    || ',' || ${cols.fieldTimestamps ? json('s.field_timestamps::text') : "'null'"} || ',' || ${cols.fieldMeta ? json('s.field_meta::text') : "'null'"}
    || ',' || ${CREATED_AT_JSON} || ']'`;
}

/**
 * created_at for rowJson(): years 1000–9999 as to_json of the UTC timestamp
 * ("2025-01-09T23:58:27.4", fraction trimmed, no zone), others as
 * CREATED_AT_TEXT already fixed-width (and ending in Z).
 */
const CREATED_AT_JSON = `CASE WHEN s.created_at >= '1000-01-01T00:00:00Z' AND s.created_at < '10000-01-01T00:00:00Z'
    THEN to_json(s.created_at AT TIME ZONE 'UTC')::text ELSE to_json(${CREATED_AT_TEXT})::text END`;

/** [id, created_at]: a row a later delete of its record supersedes. */
const SHORT_ROW_JSON = `'[' || to_json(s.id)::text || ',' || ${CREATED_AT_JSON} || ']'`;

/** CREATED_AT_JSON's value as CREATED_AT_TEXT would have it: six fraction digits and Z. */
export function fixedWidthCreatedAt(v: string): string {
  if (v.endsWith('Z')) return v;
  const dot = v.indexOf('.', 19);
  return dot === -1 ? `${v}.000000Z` : `${v}${'0'.repeat(Math.max(0, 26 - v.length))}Z`;
}

/** A rowJson() text as a ChangeRow, or a two-element one as a SupersededRow. */
function parseRowJson(text: string): ChangeRow | SupersededRow {
  const a = JSON.parse(text) as unknown[];
  if (a.length === 2) return { id: a[0] as string, createdAt: fixedWidthCreatedAt(a[1] as string) };
  return {
    id: a[0] as string,
    userId: a[1] as string,
    recordId: a[2] as string,
    op: a[3],
    data: a[4],
    fieldTimestamps: a[5],
    fieldMeta: a[6],
    createdAt: fixedWidthCreatedAt(a[7] as string),
  };
}

let cursorSeq = 0;

/** FETCHes a bulk read keeps in flight (each up to batchRows rows, ~0.5 MB at 1,000). */
const BULK_FETCHES_AHEAD = 6;

/**
 * Streams the window's rows to onBatch through a DECLAREd cursor and FETCH
 * rather than postgres.js' .cursor(): the batch handler queries the same
 * transaction's connection, and a query issued while a postgres.js cursor is
 * suspended waits behind it forever.
 *
 * Incremental: heap order, no sort. Bulk: grouped by record (record_id, then
 * user_id), each record's rows in replay order (created_at, id), so the
 * caller holds one record at a time and a delete never arrives after rows
 * that follow it (no rebuilds). Rows created before their record's last
 * delete come as [id, created_at] only: once that delete is applied they
 * cannot change anything (the contract replays a record from its last
 * delete), yet they still count as read. Only deletes whose created_at the
 * projection can parse (years 1–9999) supersede anything. Postgres sorts the
 * window once (a seq scan and an external sort; the record index would
 * fetch the heap in random order, which measured slower), and the per-record
 * maximum needs no second scan.
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
    AND NOT (s.id = ANY(${window.appliedIds}::uuid[]))`;
  const name = tx.unsafe(`refresh_rows_${++cursorSeq}`);
  const row = tx.unsafe(rowJson(cols));
  const declared = opts.bulk
    ? tx`
      DECLARE ${name} NO SCROLL CURSOR FOR
      SELECT CASE WHEN s.created_at < max(s.created_at) FILTER (
               WHERE s.op = 'delete' AND s.created_at >= '0001-01-01T00:00:00Z' AND s.created_at < '10000-01-01T00:00:00Z') OVER w
             THEN ${tx.unsafe(SHORT_ROW_JSON)} ELSE ${row} END AS r
      FROM ${syncChanges(tx, cols.schema)} s
      WHERE ${where}
      WINDOW w AS (PARTITION BY s.record_id, s.user_id)
      ORDER BY s.record_id, s.user_id, s.created_at, s.id`
    : tx`DECLARE ${name} NO SCROLL CURSOR FOR SELECT ${row} AS r FROM ${syncChanges(tx, cols.schema)} s WHERE ${where}`;
  declared.catch(() => undefined); // awaited below, after the first FETCHes are sent behind it
  const fetch = () => {
    const q = tx<{ r: string }[]>`FETCH ${tx.unsafe(String(opts.batchRows))} FROM ${name}`;
    q.catch(() => undefined); // the await below sees the error; never an unhandled rejection
    return q;
  };
  // FETCHes in flight ahead of the batch being merged, so Postgres computes and
  // sends while this process merges (any query onBatch makes queues behind them).
  // With one, a bulk read kept each side waiting for the other about half the
  // time (1M-row catch-up: 9.6 s to fetch alone with one, 5.6 s with six).
  const ahead = Array.from({ length: opts.bulk ? BULK_FETCHES_AHEAD : 1 }, fetch);
  try {
    await declared;
    for (;;) {
      const batch = await ahead.shift()!;
      if (batch.length === 0) break;
      ahead.push(fetch());
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
    // Not waited for: the pass's next statement goes right behind it.
    tx`CLOSE ${name}`.catch(() => undefined);
  }
}
