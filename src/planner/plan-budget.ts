/**
 * The per-user budget of server plans (LLM calls are the server's cost, and
 * one user's missions must not spend it for everyone). Counted in the
 * database, under a per-user advisory lock, so several instances planning
 * the same user's backlog at once never start more than the budget.
 */
import type { Sql } from '../db/pool.js';
import { markWaiting } from '../schedule/transitions.js';
import { waitBackoffMs } from '../schedule/waiting.js';
import { reason, type Reason } from '../schedule/reasons.js';

/** The window the budget counts over: a rolling day. */
export const PLAN_BUDGET_WINDOW_MS = 86_400_000;

export type BudgetTake =
  | { kind: 'ok' }
  /** The occurrence is no longer ours (superseded, completed, taken over). */
  | { kind: 'lost' }
  /** The budget is used up: the occurrence now waits for a device, with `reason`. */
  | { kind: 'over-budget'; reason: Reason };

/** Why an over-budget occurrence waits (its user sees the code's message, operators this detail). */
export function overBudgetReason(maxPerDay: number): Reason {
  return reason('plan-budget', `daily budget of ${maxPerDay} server plans used up: waiting for one of your devices to plan it (the server plans again once the last 24 h hold fewer)`);
}

/**
 * Takes one unit of the user's budget for an occurrence the server holds,
 * right before its first LLM call; its retries take none. Over budget, the
 * occurrence moves to 'waiting' in the same transaction.
 */
export async function takePlanBudget(
  sql: Sql,
  occ: { iterationId: string; userId: string; routeAttempts: number },
  opts: { holder: string; maxPerDay: number },
): Promise<BudgetTake> {
  return sql.begin(async (tx) => {
    // Two instances checking the same user at once would both see room for one more.
    await tx`SELECT pg_advisory_xact_lock(hashtext('mana_ai:plan-budget'), hashtext(${occ.userId}))`;
    const [own] = await tx<{ counted: boolean }[]>`
      SELECT server_started_at IS NOT NULL AS counted FROM mana_ai.occurrences
      WHERE iteration_id = ${occ.iterationId} AND status = 'planning' AND claimed_by = ${opts.holder}
      FOR UPDATE`;
    if (!own) return { kind: 'lost' } as const;
    if (own.counted) return { kind: 'ok' } as const;
    const [used] = await tx<{ n: number; freesInMs: number | null }[]>`
      SELECT count(*)::int AS n,
             (extract(epoch FROM min(server_started_at) - now()) * 1000)::float8 + ${PLAN_BUDGET_WINDOW_MS} AS "freesInMs"
      FROM mana_ai.occurrences
      WHERE user_id = ${occ.userId} AND server_started_at > now() - make_interval(secs => ${PLAN_BUDGET_WINDOW_MS / 1000})`;
    if ((used?.n ?? 0) >= opts.maxPerDay) {
      const reason = overBudgetReason(opts.maxPerDay);
      // Devices are nudged again on the usual backoff; the server retries once the budget frees.
      const retryInMs = Math.max(1000, Math.min(waitBackoffMs(occ.routeAttempts), used?.freesInMs ?? PLAN_BUDGET_WINDOW_MS));
      await markWaiting(tx as unknown as Sql, occ.iterationId, { from: ['planning'], holder: opts.holder, reason, retryInMs });
      return { kind: 'over-budget', reason } as const;
    }
    await tx`UPDATE mana_ai.occurrences SET server_started_at = now() WHERE iteration_id = ${occ.iterationId}`;
    return { kind: 'ok' } as const;
  });
}
