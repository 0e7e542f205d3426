/**
 * Reading the projected tables' rows from sync_changes. The table belongs
 * to mana-sync: we only read it, and adapt to the columns this deployment
 * has (the metadata column mana-sync reads: field_meta, or field_timestamps
 * on an older one; space_id, actor, origin, schema_version when present).
 */
import type { Sql, TxSql } from '../db/pool.js';
import { syncChanges, DEFAULT_SYNC_SCHEMA } from '../db/sync-table.js';
import { materialize, replay } from './lww.js';
import { MISSIONS, PROJECTED_TABLES } from './tables.js';
import { decodeRow, SYNC_OPS, type Change, type ChangeRow } from './wire.js';

export interface SyncColumns {
  /** Schema of sync_changes (SYNC_SCHEMA): every read and write names it. */
  schema: string;
  fieldTimestamps: boolean;
  fieldMeta: boolean;
  /** Newer deployments also record who wrote a row and from where. */
  actor: boolean;
  origin: boolean;
  spaceId: boolean;
  schemaVersion: boolean;
}

/** Which columns `schema`.sync_changes has; read once at start. */
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
    spaceId: names.has('space_id'),
    schemaVersion: names.has('schema_version'),
  };
}

/** The metadata column mana-sync reads: field_meta where it exists (field_timestamps is then ignored). */
export function metaColumn(cols: SyncColumns): string {
  return cols.fieldMeta ? 's.field_meta' : cols.fieldTimestamps ? 's.field_timestamps' : 'NULL::jsonb';
}

/** `s.table_name IN (…)` for the projected tables (constants, spelled as the fast-path index spells them). */
export const PROJECTED_TABLES_SQL = `s.table_name IN (${PROJECTED_TABLES.map((t) => `'${t.tableName}'`).join(', ')})`;

/** A space id that names a real space (views.ts isRealSpace), in SQL over `e`. */
export const realSpaceSql = (e: string) => `(coalesce(${e}, '') <> '' AND left(${e}, 10) <> '_personal:')`;

const CREATED_AT_TEXT = `to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/**
 * created_at for rowJson(): years 1000–9999 as to_json of the UTC timestamp
 * ("2025-01-09T23:58:27.4", fraction trimmed, no zone), others as
 * CREATED_AT_TEXT already fixed-width (and ending in Z).
 */
const CREATED_AT_JSON = `CASE WHEN s.created_at >= '1000-01-01T00:00:00Z' AND s.created_at < '10000-01-01T00:00:00Z'
    THEN to_json(s.created_at AT TIME ZONE 'UTC')::text ELSE to_json(${CREATED_AT_TEXT})::text END`;

/**
 * The columns decodeRow needs only sometimes: the actor when it makes the
 * device drop the row or goes into an insert's envelope, with origin and
 * schema_version for that envelope; else JSON null (and the actor reads
 * as SQL NULL, which decodes the same).
 */
export function extraJson(cols: SyncColumns): string {
  const emptyInsert = `s.op = 'insert' AND (s.data IS NULL OR s.data = '{}'::jsonb OR s.data = 'null'::jsonb)`;
  const badActor = cols.actor ? `(s.actor IS NOT NULL AND jsonb_typeof(s.actor) NOT IN ('object', 'array'))` : 'false';
  return `CASE WHEN ${badActor} OR (${emptyInsert})
    THEN json_build_array(${cols.actor ? 's.actor IS NULL, s.actor' : 'true, NULL'}, ${cols.origin ? 's.origin' : 'NULL'}, ${cols.schemaVersion ? 's.schema_version' : 'NULL'})::text
    ELSE 'null' END`;
}

/** table_name: a projected table as its index in PROJECTED_TABLES (no string to allocate per row), any other as text. */
const TABLE_JSON = `CASE s.table_name ${PROJECTED_TABLES.map((t, i) => `WHEN '${t.tableName}' THEN '${i}'`).join(' ')} ELSE coalesce(to_json(s.table_name)::text, 'null') END`;

/**
 * id and op without to_json, which looks up the type's output function for
 * every value (~0.2 s of Postgres CPU per million values): a uuid's text
 * never needs escaping, and mana-sync's three ops are constants.
 */
const ID_JSON = `('"' || s.id::text || '"')`;
const OP_JSON = `CASE s.op ${SYNC_OPS.map((op) => `WHEN '${op}' THEN '"${op}"'`).join(' ')} ELSE coalesce(to_json(s.op)::text, 'null') END`;

/**
 * One JSON text per row — [id, table_name, user_id, record_id, op, data,
 * meta, created_at, space_id, extra] — so postgres.js decodes one column per
 * row and JSON.parse does the rest in one call: about half the client CPU
 * of typed columns. Built by concatenation, not json_build_array (which
 * re-renders every jsonb argument: ~2 s of Postgres CPU per million rows
 * more), and created_at as to_json of the UTC timestamp rather than to_char
 * (~1 s more); parseRowJson() turns it into the fixed-width form.
 */
export function rowJson(cols: SyncColumns, from: 'table' | 'prepared' = 'table'): string {
  const json = (e: string) => `coalesce(${e}, 'null')`;
  // 'prepared': over bulkRowsSql's inner query, which has the metadata column as meta and extraJson as extra.
  const meta = from === 'prepared' ? 's.meta' : metaColumn(cols);
  const extra = from === 'prepared' ? 's.extra' : extraJson(cols);
  return `'[' || ${ID_JSON} || ',' || ${TABLE_JSON} || ',' || ${json('to_json(s.user_id)::text')}
    || ',' || ${json('to_json(s.record_id)::text')} || ',' || ${OP_JSON} || ',' || ${json('s.data::text')}
    || ',' || ${json(`${meta}::text`)} || ',' || ${CREATED_AT_JSON}
    || ',' || ${cols.spaceId ? json('to_json(s.space_id)::text') : "'null'"} || ',' || ${extra} || ']'`;
}

/** A row a later hard delete supersedes in every view that holds it, read in the same statement (bulk reads). */
export interface SupersededRow {
  id: string;
  createdAt: string;
}

/** [id, created_at]: a superseded row. */
export const SHORT_ROW_JSON = `'[' || ${ID_JSON} || ',' || ${CREATED_AT_JSON} || ']'`;

/** CREATED_AT_JSON's value as CREATED_AT_TEXT would have it: six fraction digits and Z. */
export function fixedWidthCreatedAt(v: string): string {
  if (v.endsWith('Z')) return v;
  const dot = v.indexOf('.', 19);
  return dot === -1 ? `${v}.000000Z` : `${v}${'0'.repeat(Math.max(0, 26 - v.length))}Z`;
}

/** A rowJson() text as a ChangeRow, or a two-element one as a SupersededRow. */
export function parseRowJson(text: string): ChangeRow | SupersededRow {
  const a = JSON.parse(text) as unknown[];
  if (a.length === 2) return { id: a[0] as string, createdAt: fixedWidthCreatedAt(a[1] as string) };
  const row: ChangeRow = {
    id: a[0] as string,
    tableName: typeof a[1] === 'number' ? PROJECTED_TABLES[a[1]]!.tableName : (a[1] as string),
    userId: a[2] as string,
    recordId: a[3] as string,
    op: a[4],
    data: a[5],
    meta: a[6],
    createdAt: fixedWidthCreatedAt(a[7] as string),
    spaceId: a[8] as string | null,
  };
  const extra = a[9] as [boolean, unknown, string | null, number | null] | null;
  if (extra) {
    if (!extra[0]) row.actor = extra[1];
    row.origin = extra[2];
    row.schemaVersion = extra[3];
  }
  return row;
}

/** A table of the log: any app's (the planner reads a mission's inputs too). */
export interface LogTable {
  appId: string;
  tableName: string;
}

/** One view to read: a record of a table, as one user's devices get it. */
export interface ViewRef {
  table: LogTable;
  userId: string;
  recordId: string;
}

/**
 * Every row of these views (views.ts): each viewer's own rows of the record
 * and the others' rows in a real space the viewer stamped on the record,
 * read as the log has them right now; `rows[i]` are views[i]'s. One
 * statement for all (a pass rebuilds views in batches).
 */
export async function viewRowsMany(tx: Sql | TxSql, cols: SyncColumns, views: ViewRef[]): Promise<ChangeRow[][]> {
  const out: ChangeRow[][] = views.map(() => []);
  if (views.length === 0) return out;
  const log = syncChanges(tx, cols.schema);
  // The viewer's real spaces on the record, once per view (OFFSET 0: Postgres would otherwise
  // evaluate it again for every row of the record).
  const spaces = cols.spaceId
    ? tx`(SELECT coalesce(array_agg(DISTINCT o.space_id) FILTER (WHERE ${tx.unsafe(realSpaceSql('o.space_id'))}), '{}')
          FROM ${log} o WHERE o.table_name = v.t AND o.record_id = v.r AND o.app_id = v.a AND o.user_id = v.u)`
    : tx`'{}'::text[]`;
  // LATERAL: index lookups per view. As a join, Postgres hashed the keys against a scan of the whole log.
  const rows = await tx<{ i: number; r: string }[]>`
    SELECT v.i::int AS i, x.r
    FROM (SELECT v.*, ${spaces} AS ids
          FROM unnest(${views.map((v) => v.table.appId)}::text[], ${views.map((v) => v.table.tableName)}::text[],
                      ${views.map((v) => v.userId)}::text[], ${views.map((v) => v.recordId)}::text[]) WITH ORDINALITY AS v(a, t, u, r, i)
          OFFSET 0) v
    CROSS JOIN LATERAL (
      SELECT ${tx.unsafe(rowJson(cols))} AS r FROM ${log} s
      WHERE s.table_name = v.t AND s.record_id = v.r AND s.app_id = v.a
        AND (s.user_id = v.u ${cols.spaceId ? tx`OR s.space_id = ANY(v.ids)` : tx``})) x`;
  for (const row of rows) out[row.i - 1]!.push(parseRowJson(row.r) as ChangeRow);
  return out;
}

/** Every row of one view of a record (viewRowsMany for one). */
export async function viewRows(tx: Sql | TxSql, cols: SyncColumns, table: LogTable, userId: string, recordId: string): Promise<ChangeRow[]> {
  return (await viewRowsMany(tx, cols, [{ table, userId, recordId }]))[0]!;
}

/** A view's rows decoded; the malformed ones passed to `onMalformed`. */
export function decodeView(rows: ChangeRow[], onMalformed?: (row: ChangeRow, reason: string) => void): Change[] {
  const changes: Change[] = [];
  for (const row of rows) {
    const d = decodeRow(row);
    if (!d.ok) onMalformed?.(row, d.reason);
    else if (d.change) changes.push(d.change);
  }
  return changes;
}

/**
 * One record as this user's devices get it from the committed log right
 * now (the author's view, for the write-back), replayed with lww.ts:
 * fresher than the projection, which lags by up to a pass. Null when absent.
 */
export async function currentRecord(
  tx: Sql | TxSql,
  cols: SyncColumns,
  userId: string,
  recordId: string,
  table: LogTable = MISSIONS,
): Promise<Record<string, unknown> | null> {
  const changes = decodeView(await viewRows(tx, cols, table, userId, recordId));
  return materialize(replay(table.tableName, userId, recordId, changes));
}
