/**
 * The status of each mission's agent, kept on mission_snapshots.agent_status
 * (migration 0014) so the due index leaves out the missions of an agent
 * that is paused, archived or deleted: such a mission is not due, and a due
 * scan never reads it, however long the agent stays paused.
 *
 * The one place it is written. The rule is agent.ts's (which agent, which
 * status), in SQL through agent-sql.ts; test/projection/agent-status.test.ts
 * holds the stored column to agent.ts on random missions and agents.
 *
 * A mission's agent status changes when its own `agentId` changes, when the
 * record of its agent changes, or when the user's default agent record
 * changes (a mission without an agent, or naming one with no record,
 * belongs to it). So each projection pass, once its snapshot writes have
 * landed and before it commits, works it out again for the missions whose
 * rows it applied wrote `agentId` or removed them (mayChangeAgent: a pass
 * of 1,000 updates that name no agent pays nothing), for every mission of a
 * user whose agents it changed (a user has few missions; agents change
 * rarely), and for rows not worked out yet (NULL: every row after the
 * migration).
 *
 * A snapshot row written whole (snapshot-store.ts) takes its status from
 * the same expression as it is written, so that check rewrites only rows
 * whose agent changed after their write: a catch-up writes every mission
 * once instead of twice.
 */
import type { Sql, TxSql } from '../db/pool.js';
import { missionAgentStatusSql } from '../agents/agent-sql.js';
import { AGENT_ID_FIELD } from '../agents/agent.js';
import { MISSIONS } from './tables.js';
import type { Change } from './wire.js';

/** The record of the mission row `s`'s user's agent with this id (SQL text), NULL when the user's devices hold none. */
const agentRecordOf = (agentIdSql: string): string =>
  `(SELECT CASE WHEN a.present THEN jsonb_build_object('id', a.agent_id) || a.fields END
    FROM mana_ai.agent_snapshots a WHERE a.user_id = s.user_id AND a.agent_id = ${agentIdSql})`;

/** The status of the agent of mission row `s` (user_id, fields): 'active' | 'paused' | 'archived' | 'deleted'. */
export const MISSION_AGENT_STATUS_SQL = missionAgentStatusSql('s.fields', agentRecordOf);

/**
 * Whether these changes of one view may change which agent it belongs to:
 * a mission's own row that writes `agentId` (whatever last-write-wins makes
 * of it) or removes the record. Any other mission row leaves its agent as
 * it was (the agent's status comes from the agent records, which count on
 * their own); and a row written whole takes its status as it is written.
 * Costs nothing to over-count: a mission worked out again keeps its status.
 */
export function mayChangeAgent(changes: readonly Change[]): boolean {
  return changes.some(
    (c) => c.tableName === MISSIONS.tableName && (c.kind === 'hard' || (c.kind === 'data' && c.fields.some(([field]) => field === AGENT_ID_FIELD))),
  );
}

/** Which missions to work out again; `null` for either: every mission that can have changed. */
export interface AgentStatusScope {
  /** Missions whose own record changed (their agentId may have). */
  missions: readonly { userId: string; missionId: string }[] | null;
  /** Users whose agent records changed: all their missions. */
  agentUsers: readonly string[] | null;
}

/** A mission whose agent is not active now, and was not (or not known to be) before. */
export interface MissionHeldByAgent {
  userId: string;
  missionId: string;
  status: 'paused' | 'archived' | 'deleted';
}

/**
 * Works out agent_status again for the scope (and every row still NULL),
 * writing only rows whose status changed. Returns the missions whose agent
 * turned inactive, whose open occurrences the caller settles.
 */
export async function updateAgentStatuses(tx: Sql | TxSql, scope: AgentStatusScope): Promise<MissionHeldByAgent[]> {
  const all = scope.missions === null || scope.agentUsers === null;
  const missions = scope.missions ?? [];
  const users = [...new Set(scope.agentUsers ?? [])];
  // Without a list: a mission of a user with no agent record at all belongs to the built-in
  // default agent (active), so only the others, and rows not active now, can change.
  const keys = all
    ? tx`SELECT s.user_id, s.mission_id FROM mana_ai.mission_snapshots s
        WHERE s.agent_status IS NULL OR s.agent_status <> 'active'
          OR s.user_id IN (SELECT DISTINCT a.user_id FROM mana_ai.agent_snapshots a)`
    : tx`SELECT s.user_id, s.mission_id FROM mana_ai.mission_snapshots s WHERE s.agent_status IS NULL
        UNION SELECT k.u, k.m FROM unnest(${missions.map((m) => m.userId)}::text[], ${missions.map((m) => m.missionId)}::text[]) AS k(u, m)
        UNION SELECT s.user_id, s.mission_id FROM mana_ai.mission_snapshots s WHERE s.user_id = ANY(${users}::text[])`;
  return tx<MissionHeldByAgent[]>`
    WITH k AS (${keys}),
    v AS (
      SELECT s.user_id, s.mission_id, ${tx.unsafe(MISSION_AGENT_STATUS_SQL)} AS status
      FROM k JOIN mana_ai.mission_snapshots s ON s.user_id = k.user_id AND s.mission_id = k.mission_id
    ),
    changed AS (
      UPDATE mana_ai.mission_snapshots s SET agent_status = v.status
      FROM v WHERE s.user_id = v.user_id AND s.mission_id = v.mission_id AND s.agent_status IS DISTINCT FROM v.status
      RETURNING s.user_id, s.mission_id, s.agent_status
    )
    SELECT user_id AS "userId", mission_id AS "missionId", agent_status AS status FROM changed WHERE agent_status <> 'active'`;
}
