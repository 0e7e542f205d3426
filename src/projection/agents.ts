/**
 * Reading projected agents (app `ai`, table `agents`; the webapp's `Agent`
 * type, docs/contract.md §2): each user's view of each agent record, as the
 * projection keeps it in mana_ai.agent_snapshots. Every field comes from a
 * device and is untrusted; `state` is passed on as the record has it.
 */
import type { Sql } from '../db/pool.js';

export interface AgentView {
  userId: string;
  agentId: string;
  /** The record exists on the user's devices (false: never created, or removed by a hard delete). */
  present: boolean;
  /** Soft-deleted: `deletedAt` is set (truthy). */
  deleted: boolean;
  /** The record's `state` when a string ('active' | 'paused' | 'archived' on a well-formed record). */
  state: string | null;
  /** authorId, else who created it (views.ts). */
  author: string | null;
  /** `{ id, ...fields }` when present, else null. */
  record: Record<string, unknown> | null;
}

const SELECT = `user_id AS "userId", agent_id AS "agentId", present, soft_deleted AS deleted, state, author,
  CASE WHEN present THEN jsonb_build_object('id', agent_id) || fields END AS record`;

/** A user's view of one agent; null when the log has no row of it for that user (the default agent, say). */
export async function getAgent(sql: Sql, userId: string, agentId: string): Promise<AgentView | null> {
  const [row] = await sql<AgentView[]>`
    SELECT ${sql.unsafe(SELECT)} FROM mana_ai.agent_snapshots WHERE user_id = ${userId} AND agent_id = ${agentId}`;
  return row ?? null;
}

/** Every agent view of these users (tombstones included: `present` / `deleted` say which). */
export async function agentsOfUsers(sql: Sql, userIds: readonly string[]): Promise<AgentView[]> {
  if (userIds.length === 0) return [];
  return sql<AgentView[]>`
    SELECT ${sql.unsafe(SELECT)} FROM mana_ai.agent_snapshots WHERE user_id = ANY(${[...userIds]}::text[])
    ORDER BY user_id, agent_id`;
}

/**
 * One user's agent records with these ids, each `{ id, ...fields }` as the
 * user's devices hold it (a soft-deleted one with its `deletedAt`); an id
 * with no record, or whose record a hard delete removed, is absent.
 */
export async function agentRecords(sql: Sql, userId: string, agentIds: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
  const found = new Map<string, Record<string, unknown>>();
  if (agentIds.length === 0) return found;
  const rows = await sql<{ agentId: string; record: Record<string, unknown> }[]>`
    SELECT agent_id AS "agentId", jsonb_build_object('id', agent_id) || fields AS record
    FROM mana_ai.agent_snapshots WHERE user_id = ${userId} AND agent_id = ANY(${[...new Set(agentIds)]}::text[]) AND present`;
  for (const r of rows) found.set(r.agentId, r.record);
  return found;
}
