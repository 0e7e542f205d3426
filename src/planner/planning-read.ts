/**
 * What a server run reads before it spends anything, in one statement: the
 * mission as the projection has it, whether the settle rule would close the
 * occurrence now, the records of the mission's agent and of the default
 * agent, and the zone the user's devices last reported. Each used to be a
 * statement (and a round trip) of its own, and the settle ran on every run
 * though it finds nothing to close on almost all of them.
 */
import type { Sql } from '../db/pool.js';
import { DEFAULT_AGENT_ID } from '../agents/agent.js';
import { missionAgentIdSql } from '../agents/agent-sql.js';
import type { Mission } from '../projection/mission.js';
import { UNSETTLED } from '../schedule/transitions.js';

export interface PlanningRead {
  /** The mission, null when the projection has none (not projected yet, or deleted). */
  mission: Mission | null;
  /** The settle rule would close the occurrence: settle it before anything else. */
  unsettled: boolean;
  /** Agent records by id (the mission's own agent and the default agent), as the projection keeps them. */
  agents: Map<string, Record<string, unknown>>;
  /** The zone the user's devices last reported; null: none did. */
  zone: string | null;
}

/** Null: the occurrence is gone (no row). */
export async function readForPlanning(sql: Sql, iterationId: string): Promise<PlanningRead | null> {
  const [row] = await sql<{ record: Mission | null; unsettled: boolean | null; agents: Record<string, Record<string, unknown>> | null; zone: string | null }[]>`
    SELECT CASE WHEN s.present AND NOT s.soft_deleted THEN jsonb_build_object('id', s.mission_id) || s.fields END AS record,
           -- No snapshot: nothing to settle yet (the settle waits for the projection too).
           s.user_id IS NOT NULL AND ${sql.unsafe(UNSETTLED)} AS unsettled,
           (SELECT jsonb_object_agg(a.agent_id, jsonb_build_object('id', a.agent_id) || a.fields) FROM mana_ai.agent_snapshots a
             WHERE a.user_id = o.user_id AND a.present
               AND a.agent_id IN (${sql.unsafe(missionAgentIdSql('s.fields'))}, ${DEFAULT_AGENT_ID})) AS agents,
           (SELECT z.time_zone FROM mana_ai.user_time_zones z WHERE z.user_id = o.user_id) AS zone
    FROM mana_ai.occurrences o
    LEFT JOIN mana_ai.mission_snapshots s ON s.user_id = o.user_id AND s.mission_id = o.mission_id
    WHERE o.iteration_id = ${iterationId}`;
  if (!row) return null;
  return {
    mission: row.record,
    unsettled: row.unsettled === true,
    agents: new Map(Object.entries(row.agents ?? {})),
    zone: row.zone,
  };
}
