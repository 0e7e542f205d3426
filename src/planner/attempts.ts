/**
 * The server planner's own transitions of an occurrence it holds
 * ('planning', claimed_by = its holder): waiting for the retry, the last
 * resort when not even a failed iteration can be written, and leases.
 * (Counting a planning attempt is plan-budget.ts's, keeping a paid reply
 * the write-back's.) Each is a compare-and-set
 * on the holder, so an instance that lost the occurrence changes nothing.
 */
import type { Sql } from '../db/pool.js';
import type { MissionIteration } from '../projection/mission.js';
import { reason as reasonOf } from '../schedule/reasons.js';

export interface Attempt {
  /** Planning attempts so far, this one included. */
  attempts: number;
  /** The plan an earlier attempt got from mana-llm and could not write: written now, without a second call. */
  kept: MissionIteration | null;
}

/**
 * Stays 'planning' under this holder with the lease set to the retry time:
 * whichever instance finds it expired then plans it again.
 */
export async function retryLater(sql: Sql, iterationId: string, holder: string, waitMs: number, detail: string): Promise<void> {
  await sql`
    UPDATE mana_ai.occurrences SET lease_expires_at = now() + make_interval(secs => ${waitMs / 1000}), last_error = ${detail},
      reason = ${reasonOf('plan-retry').code}, updated_at = now()
    WHERE iteration_id = ${iterationId} AND status = 'planning' AND claimed_by = ${holder}`;
}

/**
 * 'failed' without an iteration: every attempt failed and the failed
 * iteration could not be written either. The mission's nextRunAt does not
 * move, so the server does not plan it again; a device's own runner does.
 */
export async function failUnwritten(sql: Sql, iterationId: string, holder: string, detail: string): Promise<boolean> {
  const rows = await sql`
    UPDATE mana_ai.occurrences SET status = 'failed', lease_expires_at = NULL, last_error = ${detail},
      reason = ${reasonOf('plan-unwritable').code}, updated_at = now()
    WHERE iteration_id = ${iterationId} AND status = 'planning' AND claimed_by = ${holder}
    RETURNING iteration_id`;
  return rows.length > 0;
}

/** The mission already lists the iteration (written earlier, by us or a device): planned, nothing to write. */
export async function markAlreadyPlanned(sql: Sql, iterationId: string, holder: string): Promise<void> {
  await sql`
    UPDATE mana_ai.occurrences SET status = 'planned', lease_expires_at = NULL, updated_at = now()
    WHERE iteration_id = ${iterationId} AND status = 'planning' AND claimed_by = ${holder}`;
}

/**
 * Extends the leases of occurrences this holder plans (as it takes them, and
 * then periodically); returns the ids still held.
 */
export async function renewLeases(sql: Sql, iterationIds: string[], holder: string, leaseMs: number): Promise<Set<string>> {
  if (iterationIds.length === 0) return new Set();
  const kept = await sql<{ id: string }[]>`
    UPDATE mana_ai.occurrences SET lease_expires_at = now() + make_interval(secs => ${leaseMs / 1000}), updated_at = now()
    WHERE iteration_id = ANY(${iterationIds}::uuid[]) AND status = 'planning' AND claimed_by = ${holder}
    RETURNING iteration_id::text AS id`;
  return new Set(kept.map((r) => r.id));
}

/** Hands leases back (shutdown): another instance, or this one restarted, takes them over at once. */
export async function handBack(sql: Sql, iterationIds: string[], holder: string): Promise<void> {
  if (iterationIds.length === 0) return;
  await sql`UPDATE mana_ai.occurrences SET lease_expires_at = now(), updated_at = now()
            WHERE iteration_id = ANY(${iterationIds}::uuid[]) AND status = 'planning' AND claimed_by = ${holder}`;
}
