/**
 * The tables of app `ai` the projection replays, each into its own snapshot
 * table of the same shape (migrations 0001, 0007): missions, and the agents
 * they belong to. One pass reads both from the same window of the log.
 */

export interface ProjectedTable {
  appId: 'ai';
  /** sync_changes.table_name. */
  tableName: string;
  /** The snapshot table, schema-qualified. */
  snapshots: string;
  /** Its record id column. */
  idColumn: string;
}

export const MISSIONS: ProjectedTable = { appId: 'ai', tableName: 'aiMissions', snapshots: 'mana_ai.mission_snapshots', idColumn: 'mission_id' };
export const AGENTS: ProjectedTable = { appId: 'ai', tableName: 'agents', snapshots: 'mana_ai.agent_snapshots', idColumn: 'agent_id' };

export const PROJECTED_TABLES: readonly ProjectedTable[] = [MISSIONS, AGENTS];

/** The projected table with this sync_changes table_name. */
export function projectedTable(tableName: string): ProjectedTable {
  const t = PROJECTED_TABLES.find((p) => p.tableName === tableName);
  if (!t) throw new Error(`table_name: expected one of ${PROJECTED_TABLES.map((p) => p.tableName).join(', ')}, got ${JSON.stringify(tableName)}`);
  return t;
}
