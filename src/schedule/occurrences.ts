/**
 * Reads of the occurrence ledger (operators, devices reconnecting). Every
 * write is a transition in transitions.ts.
 */
import type { Sql } from '../db/pool.js';
import { COLUMNS, type Occurrence } from './occurrence.js';

export async function getOccurrence(sql: Sql, iterationId: string): Promise<Occurrence | null> {
  const [row] = await sql<Occurrence[]>`SELECT ${sql.unsafe(COLUMNS)} FROM mana_ai.occurrences o WHERE iteration_id = ${iterationId}`;
  return row ?? null;
}

export async function listOccurrences(sql: Sql, opts: { userId?: string; limit: number; openOnly?: boolean }): Promise<Occurrence[]> {
  return sql<Occurrence[]>`
    SELECT ${sql.unsafe(COLUMNS)} FROM mana_ai.occurrences o
    WHERE (${opts.userId ?? null}::text IS NULL OR o.user_id = ${opts.userId ?? null})
      AND (${opts.openOnly ?? false} = false OR o.status IN ('created', 'nudged', 'claimed', 'planning', 'waiting'))
    ORDER BY o.due_at DESC, o.iteration_id
    LIMIT ${opts.limit}`;
}

/**
 * Nudges a device may still act on: sent on (re)connect, since NOTIFY is only
 * a hint. Only occurrences already due: one readied ahead is 'nudged' before
 * its instant, and its nudge must not reach a device early. A 'created'
 * occurrence already due is included (it is being routed; a claim on it is as
 * valid as on a nudged one).
 */
export async function pendingNudgesFor(sql: Sql, userId: string): Promise<Occurrence[]> {
  return sql<Occurrence[]>`
    SELECT ${sql.unsafe(COLUMNS)} FROM mana_ai.occurrences o
    WHERE o.user_id = ${userId}
      AND o.due_at <= now()
      AND (o.status IN ('waiting', 'created') OR (o.status = 'nudged' AND o.deadline_at > now()))
    ORDER BY o.due_at LIMIT 100`;
}
