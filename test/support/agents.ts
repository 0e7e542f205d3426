/**
 * Agent records (app `ai`, table `agents`) written into the change log as
 * mana-sync writes them: an `insert` row with the whole record, or an
 * `update` row with some fields and their stamps. The coordinator reads
 * them back through its agent source, as it reads every record.
 */
import type { Sql } from '../../src/db/pool.js';

export interface AgentSeed {
  userId: string;
  agentId: string;
  name?: string;
  role?: string;
  state?: unknown;
  systemPrompt?: string;
  memory?: string;
  policy?: unknown;
  maxConcurrentMissions?: unknown;
  maxTokensPerDay?: unknown;
  /** Any further fields of the record. */
  extra?: Record<string, unknown>;
}

/** An agent record as the webapp creates it, with the seed's fields. */
export function agentRecord(a: AgentSeed): Record<string, unknown> {
  const day = new Date(Date.now() - 86_400_000).toISOString();
  return {
    id: a.agentId,
    createdAt: day,
    updatedAt: day,
    name: a.name ?? `Agent ${a.agentId}`,
    role: a.role ?? 'Helps with missions',
    state: a.state ?? 'active',
    maxConcurrentMissions: a.maxConcurrentMissions ?? 1,
    ...(a.systemPrompt === undefined ? {} : { systemPrompt: a.systemPrompt }),
    ...(a.memory === undefined ? {} : { memory: a.memory }),
    ...(a.policy === undefined ? {} : { policy: a.policy }),
    ...(a.maxTokensPerDay === undefined ? {} : { maxTokensPerDay: a.maxTokensPerDay }),
    ...a.extra,
  };
}

/** Writes agents as `insert` rows, the whole record each, in one statement. */
export async function seedAgents(sql: Sql, agents: AgentSeed[]): Promise<void> {
  const rows = agents.map((a) => ({ u: a.userId, r: a.agentId, d: agentRecord(a) }));
  await sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, origin)
    SELECT 'ai', 'agents', r, u, 'insert', d, 'device-1', 'user'
    FROM jsonb_to_recordset(${sql.json(rows as never)}::jsonb) AS x(u text, r text, d jsonb)`;
}

/**
 * Writes an `update` row changing some fields of an agent, stamped now (the
 * field_meta shape mana-sync stores: one ISO string per field), as a device
 * pausing, resuming or deleting it does.
 */
export async function updateAgent(sql: Sql, userId: string, agentId: string, fields: Record<string, unknown>): Promise<void> {
  const at = new Date().toISOString();
  const meta = Object.fromEntries(Object.keys(fields).map((k) => [k, at]));
  await sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin)
    VALUES ('ai', 'agents', ${agentId}, ${userId}, 'update', ${sql.json(fields as never)}, ${sql.json(meta)}, 'device-1', 'user')`;
}
