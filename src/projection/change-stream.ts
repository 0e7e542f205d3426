/**
 * Streaming a pass's window of the log: the projected tables' rows at or
 * above the horizon whose ids the cursor has not applied yet.
 */
import type { TxSql } from '../db/pool.js';
import { syncChanges } from '../db/sync-table.js';
import { extraJson, metaColumn, parseRowJson, PROJECTED_TABLES_SQL, realSpaceSql, rowJson, SHORT_ROW_JSON, type SupersededRow, type SyncColumns } from './change-source.js';
import { isRealSpace, stampKey, type StoredStamps } from './views.js';
import { MAX_ID_BYTES, type ChangeRow } from './wire.js';

/** What a pass reads: rows at or above the horizon whose ids it has not applied yet. */
export interface ChangeWindow {
  horizon: string;
  appliedIds: string[];
}

export interface StreamOptions {
  batchRows: number;
  /**
   * A big backlog: rows grouped by record (record_id and table), in replay
   * order, those a later hard delete supersedes without their data (see
   * streamChanges).
   */
  bulk?: boolean;
  /**
   * Only the records of one part of `of` (by a hash of record_id, so every
   * row of a record is in the same part): a bulk read split over connections.
   */
  part?: { index: number; of: number };
}

/** The rows of records in part `index` of `of` (StreamOptions.part), in SQL over `s`. */
export const recordPartSql = (index: number, of: number): string => `(hashtext(s.record_id) & 2147483647) % ${of} = ${index}`;

/**
 * A hard delete, in SQL, for the bulk read's shortcut: a subset of what
 * wire.ts decodes as one (the shape mana-sync stores: no data, no
 * metadata, an actor devices accept, a created_at and ids the projection
 * keeps). test/projection/bulk-shortcut.property.test.ts holds it to wire.ts.
 */
export function hardDeleteSql(cols: SyncColumns): string {
  const meta = metaColumn(cols);
  return `(s.op = 'delete' AND s.created_at >= '0001-01-01T00:00:00Z' AND s.created_at < '10000-01-01T00:00:00Z'
    AND s.record_id <> '' AND octet_length(s.record_id) <= ${MAX_ID_BYTES} AND octet_length(s.user_id) <= ${MAX_ID_BYTES}
    AND (s.data IS NULL OR s.data = '{}'::jsonb OR s.data = 'null'::jsonb)
    AND (${meta} IS NULL OR ${meta} = '{}'::jsonb OR ${meta} = 'null'::jsonb)
    ${cols.actor ? `AND (s.actor IS NULL OR jsonb_typeof(s.actor) IN ('object', 'array'))` : ''})`;
}

/**
 * The bulk read's shortcut: a row is sent as [id, created_at] only when a
 * later hard delete by the same user of the same record supersedes it in
 * every view that holds it. Its writer's view holds all the writer's rows,
 * so any such delete does when the row's space is not a real one (then only
 * that view holds it); a row in a real space also sits in the views of the
 * others who stamped that space, which hold the delete only when it is in
 * the same space. Windows `w` (per user) and `ws` (per user and space)
 * share one sort.
 */
export function supersededSql(cols: SyncColumns): string {
  // s.hard: hardDeleteSql, computed below the sort (bulkRowsSql).
  const lastHardDelete = (w: string) => `max(s.created_at) FILTER (WHERE s.hard) OVER ${w}`;
  if (!cols.spaceId) return `s.created_at < ${lastHardDelete('w')}`;
  return `CASE WHEN ${realSpaceSql('s.space_id')} THEN s.created_at < ${lastHardDelete('ws')} ELSE s.created_at < ${lastHardDelete('w')} END`;
}

/** The windows supersededSql uses. */
function supersededWindows(cols: SyncColumns): string {
  const w = 'w AS (PARTITION BY s.record_id, s.table_name, s.user_id)';
  return cols.spaceId ? `${w}, ws AS (PARTITION BY s.record_id, s.table_name, s.user_id, s.space_id)` : w;
}

/**
 * The bulk read's rows before the sort: what depends on a row alone — the
 * metadata column mana-sync reads, extraJson, whether it is a hard delete —
 * is worked out there, in the parallel scan, so the sort carries a flag and
 * a mostly empty text instead of the actor, origin and schema_version.
 */
function preparedColumns(cols: SyncColumns): string {
  return `s.id, s.table_name, s.user_id, s.record_id, s.op, s.data, ${metaColumn(cols)} AS meta, s.created_at,
    ${cols.spaceId ? 's.space_id' : 'NULL::text AS space_id'}, ${extraJson(cols)} AS extra, ${hardDeleteSql(cols)} AS hard`;
}

/**
 * An incremental read's rows carry the stamps stored for their record and
 * space (record-spaces.ts), so routing them needs no lookup of its own: a
 * second round trip per batch, which a pass after a few new rows waited
 * for before it could merge anything. Null for a row not in a real space.
 */
function storedStampersSql(cols: SyncColumns): string {
  if (!cols.spaceId) return 'NULL::text[]';
  return `CASE WHEN ${realSpaceSql('s.space_id')} THEN ARRAY(SELECT rs.user_id FROM mana_ai.record_spaces rs
    WHERE rs.table_name = s.table_name AND rs.record_id = s.record_id AND rs.space_id = s.space_id) END`;
}

/**
 * One cursor name per kind of read (a transaction reads one window at a
 * time, and a cursor ends with its CLOSE or its transaction). A name of its
 * own per read made each DECLARE a statement never seen before: postgres.js
 * prepared it anew every pass, a round trip of its own before the FETCH
 * behind it could go, and left it on the server with the FETCH and CLOSE
 * until the connection closed. A FETCH is prepared once with the shape of
 * the rows it returned, so the two kinds, whose rows differ, never share a name.
 */
const CURSORS = { incremental: 'refresh_rows', bulk: 'refresh_backlog' } as const;

/** FETCHes a bulk read keeps in flight (each up to batchRows rows, ~0.5 MB at 1,000). */
const BULK_FETCHES_AHEAD = 6;

/**
 * Streams the window's rows to onBatch through a DECLAREd cursor and FETCH
 * rather than postgres.js' .cursor(): the batch handler queries the same
 * transaction's connection, and a query issued while a postgres.js cursor is
 * suspended waits behind it forever.
 *
 * Incremental: heap order, no sort. Bulk: grouped by record (record_id,
 * table_name), in replay order (created_at, id), so the caller holds one
 * record at a time and a delete never arrives after rows that follow it in
 * any view. Rows a later hard delete supersedes
 * (supersededSql) come as [id, created_at] only: they cannot change anything
 * (everything before a record's last hard delete is gone), yet they still
 * count as read. Postgres sorts the window once (a seq scan and an external
 * sort; the record index would fetch the heap in random order, which
 * measured slower), then each record's rows in memory; the per-user maximum
 * needs no second scan.
 */
export async function streamChanges(
  tx: TxSql,
  cols: SyncColumns,
  window: ChangeWindow,
  opts: StreamOptions,
  onBatch: (rows: ChangeRow[], superseded: SupersededRow[], stored?: StoredStamps) => Promise<void>,
): Promise<void> {
  const where = tx`
    s.app_id = 'ai' AND ${tx.unsafe(PROJECTED_TABLES_SQL)}
    -- As text: postgres.js turns a string bound to timestamptz into a JS Date,
    -- dropping the horizon's microseconds, and rows just below it were re-read.
    -- A bulk pass scans the table: there the cast (only stable) goes into a
    -- subquery, or it would run again for every row; the window query keeps it
    -- inline, where the planner sees the value and picks the index.
    AND s.created_at >= ${opts.bulk ? tx`(SELECT ${window.horizon}::text::timestamptz)` : tx`${window.horizon}::text::timestamptz`}
    AND NOT (s.id = ANY(${window.appliedIds}::uuid[]))
    ${opts.part && opts.part.of > 1 ? tx.unsafe(`AND ${recordPartSql(Math.trunc(opts.part.index), Math.trunc(opts.part.of))}`) : tx``}`;
  // One name per kind of read (each part of a bulk read runs in a transaction of its own).
  const name = tx.unsafe(opts.bulk ? CURSORS.bulk : CURSORS.incremental);
  const row = tx.unsafe(rowJson(cols));
  const declared = opts.bulk
    ? tx`
      DECLARE ${name} NO SCROLL CURSOR FOR
      SELECT CASE WHEN ${tx.unsafe(supersededSql(cols))} THEN ${tx.unsafe(SHORT_ROW_JSON)} ELSE ${tx.unsafe(rowJson(cols, 'prepared'))} END AS r
      FROM (SELECT ${tx.unsafe(preparedColumns(cols))} FROM ${syncChanges(tx, cols.schema)} s WHERE ${where}) s
      -- record_id first: led by table_name, the order matches the (table_name, record_id, created_at)
      -- index, and Postgres reads the heap through it in random order (twice the time of a seq scan and a sort).
      -- A record's rows in replay order, whoever wrote them: each view gets its rows in order (members' rows
      -- interleaved by user would arrive late in each other's views). Sorted for the windows, the rows need
      -- only an in-memory sort per record for that.
      WINDOW ${tx.unsafe(supersededWindows(cols))}
      ORDER BY s.record_id, s.table_name, s.created_at, s.id`
    : tx`DECLARE ${name} NO SCROLL CURSOR FOR SELECT ${row} AS r, ${tx.unsafe(storedStampersSql(cols))} AS st FROM ${syncChanges(tx, cols.schema)} s WHERE ${where}`;
  declared.catch(() => undefined); // awaited below, after the first FETCHes are sent behind it
  const fetch = () => {
    const q = tx<{ r: string; st?: string[] | null }[]>`FETCH ${tx.unsafe(String(opts.batchRows))} FROM ${name}`;
    q.catch(() => undefined); // the await below sees the error; never an unhandled rejection
    return q;
  };
  // FETCHes in flight ahead of the batch being merged, so Postgres computes and
  // sends while this process merges (any query onBatch makes queues behind them).
  // With one, a bulk read kept each side waiting for the other about half the
  // time (1M-row catch-up: 9.6 s to fetch alone with one, 5.6 s with six).
  // The parts of a bulk read read at once: they share those FETCHes, so the rows in memory stay as many.
  const ahead = Array.from({ length: opts.bulk ? Math.ceil(BULK_FETCHES_AHEAD / Math.max(1, opts.part?.of ?? 1)) : 1 }, fetch);
  try {
    await declared;
    for (;;) {
      const batch = await ahead.shift()!;
      if (batch.length === 0) break;
      ahead.push(fetch());
      const rows: ChangeRow[] = [];
      const superseded: SupersededRow[] = [];
      const stored: StoredStamps | undefined = opts.bulk ? undefined : new Map();
      for (const { r, st } of batch) {
        const parsed = parseRowJson(r);
        if (!('userId' in parsed)) superseded.push(parsed);
        else {
          rows.push(parsed);
          if (stored && isRealSpace(parsed.spaceId)) stored.set(stampKey(parsed.tableName, parsed.recordId, parsed.spaceId), st ?? []);
        }
      }
      await onBatch(rows, superseded, stored);
    }
  } finally {
    // Not waited for: the pass's next statement goes right behind it.
    tx`CLOSE ${name}`.catch(() => undefined);
  }
}
