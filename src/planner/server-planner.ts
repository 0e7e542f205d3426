/**
 * The server's own planner, the fallback when no device plans an
 * occurrence: mission from the projection → prompt → mana-llm → strict parse
 * → write-back. It holds the occurrence's lease while it works and renews
 * it, so a crashed instance's work is taken over once the lease expires;
 * failures retry with backoff and finally become a visible 'failed'
 * iteration. One bad mission never blocks the others.
 */
import { Counter, type Registry } from 'prom-client';
import type { Sql } from '../db/pool.js';
import { withoutQuotes, type Logger } from '../log.js';
import { getMission } from '../projection/missions.js';
import { iterationsOf, type Mission, type MissionIteration } from '../projection/mission.js';
import { serverHolder, type Occurrence } from '../schedule/occurrence.js';
import { markWaiting } from '../schedule/transitions.js';
import type { FallbackPlanner, SweepInfo } from '../schedule/interfaces.js';
import { waitBackoffMs } from '../schedule/waiting.js';
import { reason as reasonOf } from '../schedule/reasons.js';
import { nextRunAt, resolveTimeZone } from './cadence.js';
import { createSemaphore } from '../lib/semaphore.js';
import { isConnectionError } from '../db/errors.js';
import { failedIteration, hasIteration, planIteration } from './iteration.js';
import { resolveInputs } from './inputs.js';
import { takePlanBudget } from './plan-budget.js';
import type { LlmClient, LlmCompletion } from './llm-client.js';
import { parsePlan } from './parse.js';
import { TOOL_CATALOG } from './tools.js';
import { createAgentGate, type Admission } from './agent-gate.js';
import { createLogAgentSource, type AgentSource } from '../agents/agent-source.js';
import { tokensSpent } from '../agents/bounds.js';
import { buildPlannerMessages, encryptedFields } from './prompt.js';
import { findDroppedWrites, rewriteDropped, writeIteration, type WriteTarget } from './writeback.js';

/** Default waits before re-planning after a failure: 1 min, 5 min, 30 min. */
export const DEFAULT_RETRY_BACKOFF_MS = [60_000, 300_000, 1_800_000];

const REASON_RETRY = reasonOf('plan-retry').code;

export interface ServerPlannerDeps {
  sql: Sql;
  log: Logger;
  registry: Registry;
  /** null → server planning is off (no MANA_LLM_URL): occurrences wait for a device. */
  llm: LlmClient | null;
  instanceId: string;
  leaseMs: number;
  maxAttempts: number;
  /**
   * Runs at once (the LLM client's concurrency). The rest wait, served
   * round-robin across users, before touching the database, holding their renewed leases: a backlog
   * of thousands taken over after a crash must not put thousands of
   * queries in front of the HTTP API's on the pool.
   */
  concurrency?: number;
  retryBackoffMs?: number[];
  /** Server plans one user may cause in 24 h; past it, occurrences wait for a device. */
  maxPlansPerUserPerDay?: number;
  defaultTimeZone: string;
  target: WriteTarget;
  /** Where missions' agents are read; default: replayed from the change log. */
  agents?: AgentSource;
  /** Called when a plan's end woke occurrences waiting for their agent's slot. */
  onAgentSlotFreed?: () => void;
  now?: () => Date;
}

export interface ServerPlanner extends FallbackPlanner {
  /**
   * Repairs server iterations that a concurrent device write dropped. Such a
   * drop shows only once a refresh applied that write: it looks when this
   * pass's refresh changed missions, and every DROPPED_CHECK_MS for the
   * refreshes of other instances.
   */
  sweep(info?: SweepInfo): Promise<void>;
  /** Resolves when nothing is in flight (tests, shutdown). */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

type Outcome = 'planned' | 'failed' | 'retry' | 'encrypted' | 'over_budget' | 'agent_wait' | 'lost' | 'already' | 'gone' | 'error';

/** Default of PLANNER_MAX_PLANS_PER_USER_PER_DAY: several missions a day each, far below a runaway backlog. */
export const DEFAULT_MAX_PLANS_PER_USER_PER_DAY = 50;

/** How often the sweep looks for dropped server iterations when this instance's passes saw no mission change. */
export const DROPPED_CHECK_MS = 2_000;

export function createServerPlanner(deps: ServerPlannerDeps): ServerPlanner {
  const { sql, log } = deps;
  const now = deps.now ?? (() => new Date());
  const holder = serverHolder(deps.instanceId);
  const backoff = deps.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS;
  const inFlight = new Map<string, { controller: AbortController; done: Promise<void> }>();
  let lastDroppedCheck = -Infinity;
  const slots = createSemaphore(deps.concurrency ?? 4);
  const registers = [deps.registry];
  const runs = new Counter({ name: 'mana_ai_planner_runs_total', help: 'Server planning runs by outcome', labelNames: ['outcome'] as const, registers });
  const repairs = new Counter({ name: 'mana_ai_writeback_repairs_total', help: 'Server iterations written again after a concurrent write dropped them', registers });
  let stopped = false;
  const agents = createAgentGate({
    sql,
    log,
    registry: deps.registry,
    source: deps.agents ?? createLogAgentSource({ sql, cols: deps.target.cols }),
    holder,
    ...(deps.onAgentSlotFreed ? { onWoken: deps.onAgentSlotFreed } : {}),
  });

  // One renewal for every lease this instance holds while planning.
  const renewal = setInterval(() => void renewLeases(), Math.max(200, Math.floor(deps.leaseMs / 3)));
  renewal.unref();

  async function renewLeases(): Promise<void> {
    const ids = [...inFlight.keys()];
    if (ids.length === 0) return;
    try {
      const kept = await sql<{ id: string }[]>`
        UPDATE mana_ai.occurrences SET lease_expires_at = now() + make_interval(secs => ${deps.leaseMs / 1000}), updated_at = now()
        WHERE iteration_id = ANY(${ids}::uuid[]) AND status = 'planning' AND claimed_by = ${holder}
        RETURNING iteration_id::text AS id`;
      const keptIds = new Set(kept.map((r) => r.id));
      for (const id of ids) {
        // Superseded, completed, or taken over: stop spending LLM time on it.
        if (!keptIds.has(id)) inFlight.get(id)?.controller.abort(new Error('lease lost'));
      }
    } catch (err: unknown) {
      // A database outage is reported once by the scheduler; not again every renewal.
      if (isConnectionError(err)) log.debug({ err }, 'lease renewal failed: database unreachable');
      else log.warn({ err }, 'lease renewal failed');
    }
  }

  function nextRunFor(mission: Mission, dueAt: string): string | null {
    const after = new Date(Math.max(now().getTime(), Date.parse(dueAt)));
    const r = nextRunAt(mission.cadence ?? { kind: 'manual' }, after, resolveTimeZone(mission, deps.defaultTimeZone));
    if (!r.ok) {
      log.warn({ missionId: mission.id, reason: r.reason }, 'cannot compute the next run; leaving nextRunAt unset');
      return null;
    }
    return r.next ? r.next.toISOString() : null;
  }

  async function fail(occ: Occurrence, mission: Mission, attempts: number, reason: string, startedAt: string): Promise<Outcome> {
    if (attempts < deps.maxAttempts) {
      // Stay 'planning' under our name with the lease set to the retry time:
      // whichever instance finds it expired then plans it again.
      const wait = backoff[Math.min(attempts - 1, backoff.length - 1)] ?? 60_000;
      await sql`
        UPDATE mana_ai.occurrences SET lease_expires_at = now() + make_interval(secs => ${wait / 1000}), last_error = ${reason},
          reason = ${REASON_RETRY}, updated_at = now()
        WHERE iteration_id = ${occ.iterationId} AND status = 'planning' AND claimed_by = ${holder}`;
      log.warn({ iterationId: occ.iterationId, attempts, retryInMs: wait, reason: withoutQuotes(reason) }, 'server planning failed; will retry');
      return 'retry';
    }
    const outcome = await writeFinal(occ, mission, failedIteration(occ.iterationId, reason, startedAt, now().toISOString()), 'failed', reason);
    log.error({ iterationId: occ.iterationId, attempts, reason: withoutQuotes(reason) }, 'server planning failed for good; wrote a failed iteration');
    return outcome;
  }

  /**
   * Writes the final iteration (planned or failed). Re-reads the mission
   * first: `mission` is from before the LLM call, and a device may have
   * appended an iteration since; writing the stale array would drop it.
   */
  async function writeFinal(occ: Occurrence, mission: Mission, iteration: MissionIteration, finalStatus: 'planned' | 'failed', lastError?: string): Promise<Outcome> {
    const fresh = (await getMission(sql, occ.userId, occ.missionId)) ?? mission;
    const written = await writeIteration(sql, deps.target, {
      userId: occ.userId,
      missionId: occ.missionId,
      iterationId: occ.iterationId,
      holder,
      iteration,
      baseIterations: iterationsOf(fresh),
      nextRunAt: nextRunFor(fresh, occ.dueAt),
      finalStatus,
      lastError,
      at: now(),
    });
    return written === 'written' ? finalStatus : written === 'present' ? 'already' : written;
  }

  async function run(occ: Occurrence, signal: AbortSignal): Promise<Outcome> {
    const [counted] = await sql<{ attempts: number }[]>`
      UPDATE mana_ai.occurrences SET attempts = attempts + 1, updated_at = now()
      WHERE iteration_id = ${occ.iterationId} AND status = 'planning' AND claimed_by = ${holder}
      RETURNING attempts`;
    if (!counted) return 'lost';
    const mission = await getMission(sql, occ.userId, occ.missionId);
    // Deleted meanwhile: the next settle marks the occurrence superseded.
    if (!mission) return 'gone';
    if (hasIteration(mission.iterations, occ.iterationId)) {
      // A previous run wrote it (or a device did): never a second iteration.
      await sql`UPDATE mana_ai.occurrences SET status = 'planned', lease_expires_at = NULL, updated_at = now()
                WHERE iteration_id = ${occ.iterationId} AND status = 'planning' AND claimed_by = ${holder}`;
      return 'already';
    }
    const encrypted = encryptedFields(mission);
    if (encrypted.length > 0) {
      // Ciphertext never goes to the LLM: wait for a device (re-nudged with backoff).
      await markWaiting(sql, occ.iterationId, {
        from: ['planning'],
        holder,
        reason: reasonOf('encrypted', `mission is end-to-end encrypted (${encrypted.join(', ')}): only a device can plan it`),
        retryInMs: waitBackoffMs(counted.attempts - 1),
      });
      return 'encrypted';
    }
    const admission = await agents.admit(occ, mission, counted.attempts);
    if (admission.kind !== 'admitted') return admission.kind === 'lost' ? 'lost' : 'agent_wait';
    try {
      return await planAdmitted(occ, mission, counted.attempts, admission, signal);
    } finally {
      await admission.release().catch((err: unknown) => log.warn({ err, iterationId: occ.iterationId }, "could not give back the agent's slot; it stops counting with the lease"));
    }
  }

  /** A run the mission's agent admitted: the user's budget, then the prompt, mana-llm, the parse and the write. */
  async function planAdmitted(occ: Occurrence, mission: Mission, attempts: number, agent: Extract<Admission, { kind: 'admitted' }>, signal: AbortSignal): Promise<Outcome> {
    const budget = await takePlanBudget(sql, occ, { holder, maxPerDay: deps.maxPlansPerUserPerDay ?? DEFAULT_MAX_PLANS_PER_USER_PER_DAY });
    if (budget.kind === 'lost') return 'lost';
    if (budget.kind === 'over-budget') {
      log.info({ iterationId: occ.iterationId, userId: occ.userId }, 'server plan budget used up; waiting for a device');
      return 'over_budget';
    }
    const startedAt = now().toISOString();
    const { resolved, skipped } = await resolveInputs(sql, deps.target.cols, occ.userId, mission.inputs);
    const messages = buildPlannerMessages({ mission, resolvedInputs: resolved, skippedInputs: skipped, tools: agent.tools, agent: agent.prompt, now: now() });
    let completion: LlmCompletion;
    try {
      completion = await deps.llm!.complete(messages, { signal });
    } catch (err: unknown) {
      if (signal.aborted) return 'lost';
      return fail(occ, mission, attempts, `LLM call failed: ${(err as Error).message}`, startedAt);
    }
    // Spent whatever the reply is worth: an unusable plan cost the same tokens.
    await agent.spend(tokensSpent(completion.usage, messages, completion.content).tokens);
    const parsed = parsePlan(completion.content, TOOL_CATALOG, { denied: agent.denied });
    if (!parsed.ok) return fail(occ, mission, attempts, `unusable plan: ${parsed.reason}`, startedAt);
    if (parsed.dropped) agents.dropped(occ, parsed.dropped);

    const outcome = await writeFinal(occ, mission, planIteration(occ.iterationId, parsed.plan, startedAt, now().toISOString()), 'planned');
    if (outcome === 'planned') log.info({ iterationId: occ.iterationId, steps: parsed.plan.steps.length }, 'planned on the server');
    return outcome;
  }

  return {
    enabled: deps.llm !== null,
    plan(occ) {
      if (stopped || inFlight.has(occ.iterationId)) return;
      const controller = new AbortController();
      // Keyed by user: one user's backlog delays another user's plan by at most one slot.
      const done = slots
        .acquire(controller.signal, occ.userId)
        .then(
          (release) => run(occ, controller.signal).finally(release),
          // Aborted while queued: the lease was lost or we are stopping.
          (): Outcome => 'lost',
        )
        .then((outcome) => {
          runs.inc({ outcome });
        })
        .catch((err: unknown) => {
          runs.inc({ outcome: 'error' });
          // The lease stays ours until it expires; then any instance retries. A
          // database outage fails every run in flight: the scheduler logs it once.
          if (isConnectionError(err)) log.debug({ err, iterationId: occ.iterationId }, 'server planning interrupted: database unreachable');
          else log.error({ err, iterationId: occ.iterationId }, 'server planning crashed');
        })
        .finally(() => inFlight.delete(occ.iterationId));
      inFlight.set(occ.iterationId, { controller, done });
    },
    async sweep(info) {
      const t = Date.now();
      if (info && !info.projectionChanged && t - lastDroppedCheck < DROPPED_CHECK_MS) return;
      lastDroppedCheck = t;
      for (const d of await findDroppedWrites(sql)) {
        if (await rewriteDropped(sql, deps.target, d, now())) {
          repairs.inc();
          log.warn({ iterationId: d.iterationId, missionId: d.missionId }, 'a concurrent write dropped the server iteration; wrote it again');
        }
      }
    },
    async idle() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight.values()].map((f) => f.done));
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(renewal);
      const ids = [...inFlight.keys()];
      for (const f of inFlight.values()) f.controller.abort(new Error('shutting down'));
      await Promise.allSettled([...inFlight.values()].map((f) => f.done));
      if (ids.length > 0) {
        // Hand our leases back now so another instance (or our restart) takes over at once.
        await sql`UPDATE mana_ai.occurrences SET lease_expires_at = now(), updated_at = now()
                  WHERE iteration_id = ANY(${ids}::uuid[]) AND status = 'planning' AND claimed_by = ${holder}`.catch(() => undefined);
      }
    },
  };
}
