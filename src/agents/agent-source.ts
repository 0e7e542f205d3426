/**
 * Where the coordinator gets a mission's agent: the one seam the server
 * planner (and the due scan and the router, which express the same rules in
 * SQL over the same records) read agents through. A source yields records;
 * what they mean is agent.ts's.
 */
import type { Sql } from '../db/pool.js';
import { decodeView, viewRowsMany, type SyncColumns } from '../projection/change-source.js';
import { materialize, replay } from '../projection/lww.js';
import { AGENTS } from '../projection/tables.js';
import { agentIdsToRead, resolveMissionAgent, type Agent } from './agent.js';

export { AGENTS };

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
 * rules (wire.ts, lww.ts): each as the user's devices hold it (the user's
 * view, views.ts), as fresh as the last commit, one statement of index
 * lookups per call. Keyed by user: every user's default agent has the same
 * record id.
 */
export function createLogAgentSource(deps: { sql: Sql; cols: SyncColumns }): AgentSource {
  const { sql, cols } = deps;
  return {
    async records(userId, agentIds) {
      const found = new Map<string, Record<string, unknown>>();
      if (agentIds.length === 0) return found;
      const ids = [...new Set(agentIds)];
      const views = await viewRowsMany(sql, cols, ids.map((recordId) => ({ table: AGENTS, userId, recordId })));
      ids.forEach((id, i) => {
        // A malformed row is skipped here as the projection skips it.
        const record = materialize(replay(AGENTS.tableName, userId, id, decodeView(views[i]!)));
        if (record) found.set(id, record);
      });
      return found;
    },
  };
}
