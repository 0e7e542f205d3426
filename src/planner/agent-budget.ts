/**
 * An agent's budgets in the database (migration 0013), so every instance
 * counts the same plans and tokens: `maxConcurrentMissions` bounds the
 * server plans of one agent running at once, `maxTokensPerDay` the tokens
 * the server spends for it in a rolling 24 h. Checked under a per-agent
 * advisory lock, so instances starting plans of one agent together never
 * pass the bound between them.
 *
 * A running plan holds a slot row. It counts only while its occurrence is
 * 'planning' under the same holder with a live lease: the lease the planner
 * renews anyway is the slot's lease, and a crashed instance's slots stop
 * counting when its leases run out. An occurrence held back by concurrency
 * leaves a waiter row; a plan that ends wakes the oldest waiters, so the
 * server plans them once the bound allows rather than at their backoff.
 */
import type { Sql, TxSql } from '../db/pool.js';
import { pipelinedTx } from '../db/pipelined-tx.js';
import { markWaiting } from '../schedule/transitions.js';
import { waitBackoffMs } from '../schedule/waiting.js';
import { reason, type Reason } from '../schedule/reasons.js';
import { checkBounds, TOKEN_WINDOW_MS, type AgentBounds } from '../agents/bounds.js';

/** The agent a plan is counted against, with its bounds. */
export interface CountedAgent extends AgentBounds {
  userId: string;
  agentId: string;
}

export type SlotTake =
  | { kind: 'ok' }
  /** The occurrence is no longer ours (superseded, completed, taken over). */
  | { kind: 'lost' }
  /** A bound holds it back: the occurrence now waits, with `reason`. */
  | { kind: 'held'; bound: 'tokens' | 'concurrency'; reason: Reason };

/** Open occurrences a waiter row stands for; any other waiter row is stale. */
const WAITER_LIVE = `o.status = 'waiting' AND o.reason = 'agent-concurrency'`;
/** A running slot counts while its occurrence is planned under its holder with a live lease. */
const RUNNING_LIVE = `o.status = 'planning' AND o.claimed_by = s.holder AND o.lease_expires_at > now()`;

/** The agent's lock, held to the end of the transaction. Two agents whose keys collide only share a lock (a little waiting), never a count. */
const agentLock = (tx: TxSql, a: CountedAgent): PromiseLike<unknown> =>
  tx`SELECT pg_advisory_xact_lock(hashtext('mana_ai:agent-budget'), hashtext(${`${a.userId}/${a.agentId}`}))`;

/** Why a plan waits at a bound (its user sees the code's message, operators this detail). */
export function heldReason(bound: 'tokens' | 'concurrency', a: CountedAgent): Reason {
  return bound === 'tokens'
    ? reason('agent-tokens', `agent ${a.agentId}: daily budget of ${a.maxTokensPerDay} tokens used up; the server plans again once the last 24 h hold less`)
    : reason('agent-concurrency', `agent ${a.agentId}: ${a.maxConcurrentMissions} server plan(s) at once already running; waiting for one to end`);
}

/**
 * Takes a slot for the occurrence the server holds, right before its LLM
 * call (each attempt takes one, and gives it back when it ends). At a bound
 * the occurrence moves to 'waiting' in the same transaction.
 */
export async function takeAgentSlot(
  sql: Sql,
  occ: { iterationId: string; attempts: number },
  agent: CountedAgent,
  opts: { holder: string },
): Promise<SlotTake> {
  return pipelinedTx(sql, async (p) => {
    const tx = p.tx;
    // Sent together with BEGIN, in one write (Postgres runs them in order): the lock is held
    // before the counts are read.
    p.begin();
    const lock = p.send(agentLock(tx, agent));
    const mine = p.send(tx`
      SELECT 1 FROM mana_ai.occurrences
      WHERE iteration_id = ${occ.iterationId} AND status = 'planning' AND claimed_by = ${opts.holder}
      FOR UPDATE`);
    const counts = p.send(tx<{ running: number; tokensUsed: number; freesInMs: number | null }[]>`
      WITH stale_slots AS (
        -- Housekeeping: rows that no longer count, so the agent's rows stay few.
        DELETE FROM mana_ai.agent_slots s
        WHERE s.user_id = ${agent.userId} AND s.agent_id = ${agent.agentId} AND s.iteration_id <> ${occ.iterationId}
          AND NOT EXISTS (SELECT 1 FROM mana_ai.occurrences o WHERE o.iteration_id = s.iteration_id
            AND CASE WHEN s.holder IS NULL THEN ${tx.unsafe(WAITER_LIVE)} ELSE ${tx.unsafe(RUNNING_LIVE)} END)
      ), stale_tokens AS (
        DELETE FROM mana_ai.agent_tokens
        WHERE user_id = ${agent.userId} AND agent_id = ${agent.agentId} AND spent_at <= now() - make_interval(secs => ${TOKEN_WINDOW_MS / 1000})
      )
      SELECT
        (SELECT count(*)::int FROM mana_ai.agent_slots s
          WHERE s.user_id = ${agent.userId} AND s.agent_id = ${agent.agentId} AND s.holder IS NOT NULL AND s.iteration_id <> ${occ.iterationId}
            AND EXISTS (SELECT 1 FROM mana_ai.occurrences o WHERE o.iteration_id = s.iteration_id AND ${tx.unsafe(RUNNING_LIVE)})) AS running,
        (SELECT coalesce(sum(tokens), 0)::float8 FROM mana_ai.agent_tokens
          WHERE user_id = ${agent.userId} AND agent_id = ${agent.agentId} AND spent_at > now() - make_interval(secs => ${TOKEN_WINDOW_MS / 1000})) AS "tokensUsed",
        (SELECT (extract(epoch FROM min(spent_at) - now()) * 1000)::float8 + ${TOKEN_WINDOW_MS} FROM mana_ai.agent_tokens
          WHERE user_id = ${agent.userId} AND agent_id = ${agent.agentId} AND spent_at > now() - make_interval(secs => ${TOKEN_WINDOW_MS / 1000})) AS "freesInMs"`);
    const [, [own], [use]] = await Promise.all([lock, mine, counts]);
    // Not ours: rolled back as the transaction is left open.
    if (!own) return { kind: 'lost' } as const;
    const verdict = checkBounds(use!, agent);
    if (verdict === 'ok') {
      await p.commit(upsertSlot(tx, occ.iterationId, agent, opts.holder));
      return { kind: 'ok' } as const;
    }
    const why = heldReason(verdict, agent);
    const backoff = waitBackoffMs(occ.attempts);
    // Tokens free as the window moves; a slot frees when a plan ends, and that plan wakes the waiter.
    const retryInMs = verdict === 'tokens' ? Math.max(1000, Math.min(backoff, use!.freesInMs ?? backoff)) : backoff;
    const waiter = verdict === 'concurrency' ? p.send(upsertSlot(tx, occ.iterationId, agent, null)) : Promise.resolve();
    await p.commit(waiter, markWaiting(tx as unknown as Sql, occ.iterationId, { from: ['planning'], holder: opts.holder, reason: why, retryInMs }));
    return { kind: 'held', bound: verdict, reason: why } as const;
  });
}

/** Records a running slot (holder) or a waiter (null); a waiter keeps its place in the queue. */
function upsertSlot(tx: TxSql, iterationId: string, agent: CountedAgent, holder: string | null): PromiseLike<unknown> {
  return tx`
    INSERT INTO mana_ai.agent_slots (iteration_id, user_id, agent_id, holder)
    VALUES (${iterationId}, ${agent.userId}, ${agent.agentId}, ${holder})
    ON CONFLICT (iteration_id) DO UPDATE SET holder = EXCLUDED.holder, user_id = EXCLUDED.user_id, agent_id = EXCLUDED.agent_id,
      since = CASE WHEN EXCLUDED.holder IS NULL THEN mana_ai.agent_slots.since ELSE now() END`;
}

/**
 * Gives the slot back when a plan ends (whatever its outcome) and wakes as
 * many waiters of the agent as slots are free now, oldest first: their
 * retry time becomes now, so the next pass routes them again. Returns how
 * many it woke.
 *
 * Under the agent's lock, like a take: a take that counted this plan as
 * running and is about to leave a waiter either commits it before the wake
 * reads the waiters, or counts again after the wake and finds the slot free.
 * Without it, a waiter committed just after the wake's snapshot waited its
 * whole backoff. The wake is a statement of its own behind the lock, so its
 * snapshot is taken once the lock is held.
 */
export async function releaseAgentSlot(sql: Sql, iterationId: string, agent: CountedAgent, holder: string): Promise<number> {
  const free = agent.maxConcurrentMissions;
  return pipelinedTx(sql, async (p) => {
    const tx = p.tx;
    p.begin();
    const [, woken] = await p.commit(agentLock(tx, agent), tx<{ iteration_id: string }[]>`
    WITH gone AS (
      DELETE FROM mana_ai.agent_slots WHERE iteration_id = ${iterationId} AND holder = ${holder}
    ), running AS (
      SELECT count(*)::int AS n FROM mana_ai.agent_slots s
      WHERE s.user_id = ${agent.userId} AND s.agent_id = ${agent.agentId} AND s.holder IS NOT NULL AND s.iteration_id <> ${iterationId}
        AND EXISTS (SELECT 1 FROM mana_ai.occurrences o WHERE o.iteration_id = s.iteration_id AND ${tx.unsafe(RUNNING_LIVE)})
    ), next AS (
      SELECT s.iteration_id FROM mana_ai.agent_slots s JOIN mana_ai.occurrences o ON o.iteration_id = s.iteration_id
      WHERE s.user_id = ${agent.userId} AND s.agent_id = ${agent.agentId} AND s.holder IS NULL AND ${tx.unsafe(WAITER_LIVE)}
        AND o.next_attempt_at > now()
      ORDER BY s.since
      LIMIT greatest(coalesce(${free}::int, 1) - (SELECT n FROM running), 0)
    )
    UPDATE mana_ai.occurrences o SET next_attempt_at = now(), updated_at = now()
    FROM next WHERE o.iteration_id = next.iteration_id AND ${tx.unsafe(WAITER_LIVE)}
    RETURNING o.iteration_id`);
    return woken.length;
  });
}

/** Books the tokens one LLM reply cost against the agent. */
export async function recordAgentTokens(sql: Sql, iterationId: string, agent: CountedAgent, tokens: number): Promise<void> {
  await sql`
    INSERT INTO mana_ai.agent_tokens (user_id, agent_id, iteration_id, tokens)
    VALUES (${agent.userId}, ${agent.agentId}, ${iterationId}, ${tokens})`;
}
