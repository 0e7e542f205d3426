/**
 * The one spelling of mana-sync's change log in SQL: always schema-qualified
 * (SYNC_SCHEMA, default public), never found through search_path. A login
 * role named like the coordinator's own schema (mana_ai) has that schema
 * first on its default search_path, where an unqualified name would miss
 * mana-sync's table or, worse, find a shadow copy.
 */
import type { Sql, TxSql } from './pool.js';

export const DEFAULT_SYNC_SCHEMA = 'public';

/** `"schema".sync_changes`; the schema is a validated plain identifier (config.ts), quoted anyway. */
export function syncChangesName(schema: string = DEFAULT_SYNC_SCHEMA): string {
  return `"${schema.replace(/"/g, '""')}".sync_changes`;
}

/** The qualified table as a fragment for a tagged query: tx`SELECT … FROM ${syncChanges(tx, schema)}`. */
export function syncChanges(sql: Sql | TxSql, schema: string = DEFAULT_SYNC_SCHEMA) {
  return sql.unsafe(syncChangesName(schema));
}
