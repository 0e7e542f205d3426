/**
 * Where the coordinator gets a mission's agent: the one seam the server
 * planner (and the due scan and the router, which express the same rules in
 * SQL over the same records) read agents through. A source yields records;
 * what they mean is agent.ts's.
 */
import type { Sql } from '../db/pool.js';
import { syncChanges } from '../db/sync-table.js';
import { changeColumns, type SyncColumns } from '../projection/change-source.js';
import { materialize, normalizeRow, replay, type Change, type ChangeRow } from '../projection/lww.js';
import { agentIdsToRead, resolveMissionAgent, type Agent } from './agent.js';

/** App and table of agent records in the change log. */
export const AGENTS = { appId: 'ai', tableName: 'agents' } as const;

export interface AgentSource {
  /**
   * One user's agent records with these ids, each `{ id, ...fields }` as
   * last written (a soft-deleted one with its `deletedAt`); an id with no
   * record, or whose record the log removed, is absent.
   */
  records(userId: string, agentIds: readonly string[]): Promise<Map<string, Record<string, unknown>>>;
}

/** The agent a mission belongs to (one lookup for its own agent and the default agent). */
export async function agentOfMission(source: AgentSource, userId: string, mission: Record<string, unknown>): Promise<Agent> {
  return resolveMissionAgent(mission, await source.records(userId, agentIdsToRead(mission)));
}

/**
 * Agent records replayed from the change log itself with the projection's
 * merge rules (lww.ts): as fresh as the last commit, one indexed read of the
 * user's agent rows per lookup. Filtered by user first: every user's
 * default agent has the same record id, so a lookup by record id would read
 * every user's.
 */
export function createLogAgentSource(deps: { sql: Sql; cols: SyncColumns }): AgentSource {
  const { sql, cols } = deps;
  return {
    async records(userId, agentIds) {
      const found = new Map<string, Record<string, unknown>>();
      if (agentIds.length === 0) return found;
      const rows = await sql<ChangeRow[]>`
        SELECT ${changeColumns(sql, cols)} FROM ${syncChanges(sql, cols.schema)}
        WHERE user_id = ${userId} AND app_id = ${AGENTS.appId} AND table_name = ${AGENTS.tableName}
          AND record_id = ANY(${agentIds as string[]})`;
      const byRecord = new Map<string, Change[]>();
      for (const row of rows) {
        // A malformed row is skipped here as the projection skips it.
        const n = normalizeRow(row);
        if (!n.ok) continue;
        const list = byRecord.get(row.recordId) ?? [];
        list.push(n.change);
        byRecord.set(row.recordId, list);
      }
      for (const [id, changes] of byRecord) {
        const record = materialize(replay(userId, id, changes));
        if (record) found.set(id, record);
      }
      return found;
    },
  };
}
