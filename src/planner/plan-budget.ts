/**
 * The per-user budget of server plans (LLM calls are the server's cost, and
 * one user's missions must not spend it for everyone). Counted in the
 * database, under a per-user advisory lock, so several instances planning
 * the same user's backlog at once never start more than the budget.
 */
import type { Sql } from '../db/pool.js';
import { pipelinedTx } from '../db/pipelined-tx.js';
import type { MissionIteration } from '../projection/mission.js';
import type { Attempt } from './attempts.js';
import { markWaiting } from '../schedule/transitions.js';
import { waitBackoffMs } from '../schedule/waiting.js';
import { reason, type Reason } from '../schedule/reasons.js';

/** The window the budget counts over: a rolling day. */
export const PLAN_BUDGET_WINDOW_MS = 86_400_000;

export type AttemptStart =
  | { kind: 'started'; attempt: Attempt }
  /** The occurrence is no longer ours (superseded, completed, taken over). */
  | { kind: 'lost' }
  /** The budget is used up: the occurrence now waits for a device, with `reason`. */
  | { kind: 'over-budget'; reason: Reason };

/** Why an over-budget occurrence waits (its user sees the code's message, operators this detail). */
export function overBudgetReason(maxPerDay: number): Reason {
  return reason('plan-budget', `daily budget of ${maxPerDay} server plans used up: waiting for one of your devices to plan it (the server plans again once the last 24 h hold fewer)`);
}

/**
 * Starts a planning attempt of an occurrence the server holds: takes one
 * unit of the user's budget on its first attempt (its retries take none)
 * and counts the attempt, in one transaction whose statements go out in one
 * write. Over budget, nothing is counted and the occurrence moves to
 * 'waiting'. Waiting for a device, a budget or a decryption is never an
 * attempt.
 */
export async function startServerAttempt(
  sql: Sql,
  occ: { iterationId: string; userId: string; routeAttempts: number },
  opts: { holder: string; maxPerDay: number },
): Promise<AttemptStart> {
  const [row] = await pipelinedTx(sql, async (p) => {
    p.begin();
    // The count below runs after the lock is held (a statement of its own, so its snapshot is
    // taken then): two instances checking the same user at once would both see room for one more.
    const [, rows] = await p.commit(
      p.sql`SELECT pg_advisory_xact_lock(hashtext('mana_ai:plan-budget'), hashtext(${occ.userId}))`,
      p.sql<{ own: boolean; attempts: number | null; kept: MissionIteration | null; freesInMs: number | null }[]>`
        WITH own AS (
          SELECT iteration_id, server_started_at IS NOT NULL AS counted FROM mana_ai.occurrences
          WHERE iteration_id = ${occ.iterationId} AND status = 'planning' AND claimed_by = ${opts.holder}
          FOR UPDATE
        ), used AS (
          SELECT count(*)::int AS n,
                 (extract(epoch FROM min(server_started_at) - now()) * 1000)::float8 + ${PLAN_BUDGET_WINDOW_MS} AS "freesInMs"
          FROM mana_ai.occurrences
          WHERE user_id = ${occ.userId} AND server_started_at > now() - make_interval(secs => ${PLAN_BUDGET_WINDOW_MS / 1000})
        ), started AS (
          UPDATE mana_ai.occurrences o SET attempts = o.attempts + 1, server_started_at = coalesce(o.server_started_at, now()), updated_at = now()
          FROM own, used
          WHERE o.iteration_id = own.iteration_id AND (own.counted OR used.n < ${opts.maxPerDay})
          RETURNING o.attempts, CASE WHEN o.written_at IS NULL THEN o.plan END AS kept
        )
        SELECT EXISTS (SELECT 1 FROM own) AS own, started.attempts, started.kept, used."freesInMs"
        FROM used LEFT JOIN started ON true`,
    );
    return rows;
  });
  if (!row?.own) return { kind: 'lost' };
  if (row.attempts !== null) return { kind: 'started', attempt: { attempts: row.attempts, kept: row.kept } };
  const reason = overBudgetReason(opts.maxPerDay);
  // Devices are nudged again on the usual backoff; the server retries once the budget frees.
  const retryInMs = Math.max(1000, Math.min(waitBackoffMs(occ.routeAttempts), row.freesInMs ?? PLAN_BUDGET_WINDOW_MS));
  // A compare-and-set on our own hold: the lock guarded the count, not this move.
  const moved = await markWaiting(sql, occ.iterationId, { from: ['planning'], holder: opts.holder, reason, retryInMs });
  return moved ? { kind: 'over-budget', reason } : { kind: 'lost' };
}
