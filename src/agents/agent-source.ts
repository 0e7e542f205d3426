/**
 * Where the server planner gets a mission's agent: the seam it reads agents
 * through (the due scan and settling read the same projected records, in SQL:
 * projection/agent-status.ts). A source yields records; what they mean is
 * agent.ts's.
 */
import type { Sql } from '../db/pool.js';
import { agentRecords } from '../projection/agents.js';
import { agentIdsToRead, resolveMissionAgent, type Agent } from './agent.js';

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
 * Agent records as the projection keeps them (mana_ai.agent_snapshots: each
 * user's view of each record, merged by the webapp's rules in the same pass
 * as the missions): a primary-key read per call, whatever the record's
 * history, so editing an agent many times costs a plan nothing. As fresh as
 * the last pass, which is what the due scan and settling saw too. Keyed by
 * user: every user's default agent has the same record id.
 */
export function createProjectedAgentSource(deps: { sql: Sql }): AgentSource {
  return {
    records(userId, agentIds) {
      return agentRecords(deps.sql, userId, agentIds);
    },
  };
}
