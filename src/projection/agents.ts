/**
 * Reading projected agents (app `ai`, table `agents`; the webapp's `Agent`
 * type, docs/contract.md §2): each user's view of each agent record, as the
 * projection keeps it in mana_ai.agent_snapshots. Every field comes from a
 * device and is untrusted; agent.ts says what a record means.
 */
import type { Sql } from '../db/pool.js';

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
