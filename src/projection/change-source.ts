/**
 * Reading aiMissions rows from sync_changes. The table belongs to mana-sync:
 * we only read it, and adapt to the metadata column(s) this deployment has
 * (older: field_timestamps; newer: field_meta; some have both).
 */
import type { Sql, TxSql } from '../db/pool.js';
import type { ChangeRow } from './lww.js';

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

/** Every row of one record, for a rebuild after a late delete. */
export async function recordRows(tx: TxSql, cols: SyncColumns, userId: string, recordId: string): Promise<ChangeRow[]> {
  return tx<ChangeRow[]>`
    SELECT ${changeColumns(tx, cols)} FROM sync_changes
    WHERE table_name = ${MISSIONS.tableName} AND record_id = ${recordId}
      AND app_id = ${MISSIONS.appId} AND user_id = ${userId}`;
}
