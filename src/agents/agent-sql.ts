/**
 * The agent rules of agent.ts in SQL, for queries that decide many missions
 * at once (a due scan, settling): which agent a mission belongs to and
 * whether it is active. agent.ts is the rule; test/agents/agent-sql.test.ts
 * holds these expressions to it on random records.
 *
 * Each builder takes SQL text of jsonb expressions and returns SQL text; the
 * caller interpolates only its own column names, never user data.
 */
import { AGENT_ID_FIELD, DEFAULT_AGENT_ID, MAX_AGENT_ID_BYTES } from './agent.js';

/** JavaScript truthiness of a jsonb value (SQL NULL: an absent field, falsy). */
function truthy(v: string): string {
  return `(CASE jsonb_typeof(${v})
    WHEN 'null' THEN false WHEN 'boolean' THEN ${v} = 'true'::jsonb
    WHEN 'number' THEN (${v})::numeric <> 0 WHEN 'string' THEN ${v} <> '""'::jsonb
    WHEN 'object' THEN true WHEN 'array' THEN true ELSE false END)`;
}

/** The status agent.ts reads from a record (`record`: jsonb, never NULL here): 'active' | 'paused' | 'archived' | 'deleted'. */
export function agentStatusSql(record: string): string {
  const state = `(${record} -> 'state')`;
  return `(CASE WHEN ${truthy(`(${record} -> 'deletedAt')`)} THEN 'deleted'
    WHEN ${state} IS NULL OR jsonb_typeof(${state}) = 'null' THEN 'active'
    WHEN jsonb_typeof(${state}) = 'string' AND ${record} ->> 'state' IN ('active', 'paused', 'archived') THEN ${record} ->> 'state'
    ELSE 'paused' END)`;
}

/** The agent id a mission names (`mission`: jsonb of its fields), or NULL when it names none usable. */
export function missionAgentIdSql(mission: string): string {
  const id = `(${mission} ->> '${AGENT_ID_FIELD}')`;
  return `(CASE WHEN jsonb_typeof(${mission} -> '${AGENT_ID_FIELD}') = 'string' AND ${id} <> '' AND octet_length(${id}) <= ${MAX_AGENT_ID_BYTES} THEN ${id} END)`;
}

/**
 * The record of the agent a mission belongs to: its own agent's record, else
 * the default agent's; NULL for the built-in default agent (no record).
 *
 * @param mission jsonb of the mission's fields
 * @param recordOf SQL of the jsonb record of the mission's user's agent with
 *   the id given as SQL text, NULL when there is none (never written, or
 *   removed); e.g. a scalar subquery on a table of agent records. Each is
 *   used once.
 */
export function missionAgentRecordSql(mission: string, recordOf: (agentIdSql: string) => string): string {
  const fallback = `'${DEFAULT_AGENT_ID.replace(/'/g, "''")}'`;
  return `(SELECT c.r FROM (VALUES (1, ${recordOf(missionAgentIdSql(mission))}), (2, ${recordOf(fallback)})) AS c(n, r)
    WHERE jsonb_typeof(c.r) = 'object' ORDER BY c.n LIMIT 1)`;
}

/** The status of a resolved agent record (a column or expression; NULL: the built-in default agent, 'active'). */
export function resolvedAgentStatusSql(record: string): string {
  return `(CASE WHEN ${record} IS NULL THEN 'active' ELSE ${agentStatusSql(record)} END)`;
}

/** The status of the agent a mission belongs to, in one expression (see {@link missionAgentRecordSql}). */
export function missionAgentStatusSql(mission: string, recordOf: (agentIdSql: string) => string): string {
  return `(SELECT ${resolvedAgentStatusSql('a.r')} FROM (SELECT ${missionAgentRecordSql(mission, recordOf)} AS r) AS a)`;
}
