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
import { iterationsOf, type Mission, type MissionIteration } from '../projection/mission.js';
import { serverHolder, type Occurrence } from '../schedule/occurrence.js';
import { markWaiting, settleFromSnapshots } from '../schedule/transitions.js';
import type { FallbackPlanner, SweepInfo } from '../schedule/interfaces.js';
import { waitBackoffMs } from '../schedule/waiting.js';
import { reason as reasonOf } from '../schedule/reasons.js';
import { nextRunAt, resolveTimeZone } from './cadence.js';
import { isConnectionError } from '../db/errors.js';
import { jsonbSafe, textSafe } from '../lib/db-safe.js';
import { failedIteration, hasIteration, planIteration, withoutDeniedSteps } from './iteration.js';
import { failUnwritten, markAlreadyPlanned, retryLater, type Attempt } from './attempts.js';
import { createRunRegistry } from './run-registry.js';
import { resolveInputs } from './inputs.js';
import { startServerAttempt } from './plan-budget.js';
import { readForPlanning } from './planning-read.js';
import type { LlmClient, LlmCompletion } from './llm-client.js';
import { parsePlan } from './parse.js';
import { TOOL_CATALOG } from './tools.js';
import { createAgentGate, type Admission } from './agent-gate.js';
import { agentOfMission, createProjectedAgentSource, type AgentSource } from '../agents/agent-source.js';
import { principalOf, resolveMissionAgent } from '../agents/agent.js';
import { tokensSpent } from '../agents/bounds.js';
import { buildPlannerMessages, encryptedFields } from './prompt.js';
import { findDroppedWrites, rewriteDropped, writeIteration, type WriteTarget } from './writeback.js';

type Admitted = Extract<Admission, { kind: 'admitted' }>;

/** A run's mission as read when it began, and the zone its cadence advances in. */
interface Planned {
  mission: Mission;
  /** The zone the user's devices last reported; null: none did. */
  zone: string | null;
}

/** Default waits before re-planning after a failure: 1 min, 5 min, 30 min. */
export const DEFAULT_RETRY_BACKOFF_MS = [60_000, 300_000, 1_800_000];

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
  /** Where cadences advance for a user no device reported a zone for (devices report theirs: planning-read.ts). */
  defaultTimeZone: string;
  target: WriteTarget;
  /** Called after each committed write to a mission (plan, failed iteration, repair): devices are told at once. */
  onWritten?: (w: { userId: string; missionId: string; iterationId: string }) => void;
  /**
   * Where a repair of a dropped write reads the mission's agent; default: the
   * projection's agent records (a run reads them with the mission).
   */
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
  /** Aborts the runs in flight and hands their leases back; an occurrence handed over after it goes back at once. */
  stop(): Promise<void>;
  /** Resolves when the occurrences a last scheduler pass handed over after stop() have gone back. */
  handedBack(): Promise<void>;
}

type Outcome = 'planned' | 'failed' | 'retry' | 'encrypted' | 'over_budget' | 'agent_wait' | 'lost' | 'already' | 'gone' | 'superseded' | 'error';

/** Default of PLANNER_MAX_PLANS_PER_USER_PER_DAY: several missions a day each, far below a runaway backlog. */
export const DEFAULT_MAX_PLANS_PER_USER_PER_DAY = 50;

/** How often the sweep looks for dropped server iterations when this instance's passes saw no mission change. */
export const DROPPED_CHECK_MS = 2_000;


const messageOf = (err: unknown): string => textSafe(err instanceof Error ? err.message : String(err));

/** Runs one phase of planning; a thrown error (other than a lost connection) is wrapped to name the phase. */
async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err: unknown) {
    if (isConnectionError(err)) throw err;
    throw new Error(`${name}: ${messageOf(err)}`, { cause: err });
  }
}

export function createServerPlanner(deps: ServerPlannerDeps): ServerPlanner {
  const { sql, log } = deps;
  const now = deps.now ?? (() => new Date());
  const holder = serverHolder(deps.instanceId);
  const backoff = deps.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS;
  let lastDroppedCheck = -Infinity;
  const registers = [deps.registry];
  const runs = new Counter({ name: 'mana_ai_planner_runs_total', help: 'Server planning runs by outcome', labelNames: ['outcome'] as const, registers });
  const repairs = new Counter({ name: 'mana_ai_writeback_repairs_total', help: 'Server iterations written again after a concurrent write dropped them', registers });
  const agentSource = deps.agents ?? createProjectedAgentSource({ sql });
  const agents = createAgentGate({
    sql,
    log,
    registry: deps.registry,
    holder,
    ...(deps.onAgentSlotFreed ? { onWoken: deps.onAgentSlotFreed } : {}),
  });

  const registry = createRunRegistry<Outcome>({
    sql,
    log,
    holder,
    leaseMs: deps.leaseMs,
    concurrency: deps.concurrency ?? 4,
    run: (occ, signal) => run(occ, signal),
    counted: (outcome) => runs.inc({ outcome }),
  });

  /**
   * The next run after this plan, from the moment it finished, as the webapp
   * advances a mission at the end of its own run. The server only plans an
   * occurrence once it is due, so `at` is past `dueAt`; the max only keeps a
   * clock behind the database's from handing back the same due time.
   */
  function nextRunFor(mission: Mission, dueAt: string, at: Date, userTz: string | null): string | null {
    const after = new Date(Math.max(at.getTime(), Date.parse(dueAt)));
    const r = nextRunAt(mission.cadence ?? { kind: 'manual' }, after, resolveTimeZone(mission, deps.defaultTimeZone, userTz));
    if (!r.ok) {
      log.warn({ missionId: mission.id, reason: r.reason }, 'cannot compute the next run; leaving nextRunAt unset');
      return null;
    }
    return r.next ? r.next.toISOString() : null;
  }

  /**
   * A failed planning attempt: retried after the backoff while attempts are
   * left, else a visible 'failed' iteration (which moves nextRunAt like any
   * write-back). When even that cannot be written, the occurrence ends
   * 'failed' without one.
   */
  async function fail(occ: Occurrence, planned: Planned, attempts: number, why: string, startedAt: string, agent?: Admitted): Promise<Outcome> {
    const reason = textSafe(why);
    if (attempts < deps.maxAttempts) {
      const wait = backoff[Math.min(attempts - 1, backoff.length - 1)] ?? 60_000;
      // The retry's lease is shorter than a renewal's: no renewal may land after it.
      await registry.letGo(occ.iterationId);
      await retryLater(sql, occ.iterationId, holder, wait, reason);
      log.warn({ iterationId: occ.iterationId, attempts, retryInMs: wait, reason: withoutQuotes(reason) }, 'server planning failed; will retry');
      return 'retry';
    }
    try {
      const outcome = await writeFinal(occ, planned, failedIteration(occ.iterationId, reason, startedAt, now().toISOString()), 'failed', { lastError: reason, agent });
      log.error({ iterationId: occ.iterationId, attempts, reason: withoutQuotes(reason) }, 'server planning failed for good; wrote a failed iteration');
      return outcome;
    } catch (err: unknown) {
      if (isConnectionError(err)) throw err;
      const detail = `${reason}; the failed iteration could not be written either: ${messageOf(err)}`;
      if (!(await failUnwritten(sql, occ.iterationId, holder, detail))) return 'lost';
      log.error({ iterationId: occ.iterationId, attempts, reason: withoutQuotes(detail) }, 'server planning failed for good and its failed iteration could not be written');
      return 'failed';
    }
  }

  /**
   * Writes the final iteration (planned or failed). The write-back merges it
   * into the record as the log holds it then, and advances the cadence that
   * record has: a device may have appended an iteration, or changed the
   * cadence, while the LLM answered.
   */
  async function writeFinal(
    occ: Occurrence,
    planned: Planned,
    iteration: MissionIteration,
    finalStatus: 'planned' | 'failed',
    opts: { lastError?: string; agent?: Admitted | undefined; keep?: boolean } = {},
  ): Promise<Outcome> {
    const at = now();
    const written = await writeIteration(sql, deps.target, {
      userId: occ.userId,
      missionId: occ.missionId,
      iterationId: occ.iterationId,
      holder,
      iteration,
      baseIterations: iterationsOf(planned.mission),
      nextRunAt: (current) => nextRunFor(current as Mission, occ.dueAt, at, planned.zone),
      finalStatus,
      lastError: opts.lastError,
      at,
      ...(opts.keep ? { keep: true } : {}),
      // Made as the mission's agent when one admitted it (the default agent otherwise).
      ...(opts.agent ? { principal: principalOf(opts.agent.agent) } : {}),
    });
    if (written === 'written') deps.onWritten?.({ userId: occ.userId, missionId: occ.missionId, iterationId: occ.iterationId });
    return written === 'written' ? finalStatus : written === 'present' ? 'already' : written;
  }

  async function run(occ: Occurrence, signal: AbortSignal): Promise<Outcome> {
    const read = await readForPlanning(sql, occ.iterationId);
    if (!read) return 'lost';
    const { mission } = read;
    if (mission && hasIteration(mission.iterations, occ.iterationId)) {
      // A previous run wrote it (or a device did): never a second iteration.
      await markAlreadyPlanned(sql, occ.iterationId, holder);
      return 'already';
    }
    // Paused, deleted or rescheduled since it was handed over, and not settled yet (a settle
    // held back during a backlog, or a run queued for a slot): the settle's own rule, for this
    // mission, before anything is spent on it.
    if (read.unsettled) {
      const settled = await settleFromSnapshots(sql, [{ userId: occ.userId, missionId: occ.missionId }]);
      if (settled.some((s) => s.iterationId === occ.iterationId)) return 'superseded';
    }
    // Not projected (yet): a settle closes it once the projection has the mission.
    if (!mission) return 'gone';
    const encrypted = encryptedFields(mission);
    if (encrypted.length > 0) {
      // Ciphertext never goes to the LLM: wait for a device (re-nudged with backoff).
      await markWaiting(sql, occ.iterationId, {
        from: ['planning'],
        holder,
        reason: reasonOf('encrypted', `mission is end-to-end encrypted (${encrypted.join(', ')}): only a device can plan it`),
        retryInMs: waitBackoffMs(occ.routeAttempts),
      });
      return 'encrypted';
    }
    // The mission's agent: not active, or at one of its bounds, and the occurrence waits.
    const admission = await agents.admit(occ, resolveMissionAgent(mission, read.agents));
    if (admission.kind !== 'admitted') return admission.kind === 'lost' ? 'lost' : 'agent_wait';
    try {
      return await runAdmitted(occ, { mission, zone: read.zone }, admission, signal);
    } finally {
      await admission.release().catch((err: unknown) => log.warn({ err, iterationId: occ.iterationId }, "could not give back the agent's slot; it stops counting with the lease"));
    }
  }

  /** A run the mission's agent admitted: the user's budget, then one planning attempt. */
  async function runAdmitted(occ: Occurrence, planned: Planned, agent: Admitted, signal: AbortSignal): Promise<Outcome> {
    // Only now is it a planning attempt: waiting (budget, encryption, an agent, a device) spends none.
    const start = await startServerAttempt(sql, occ, { holder, maxPerDay: deps.maxPlansPerUserPerDay ?? DEFAULT_MAX_PLANS_PER_USER_PER_DAY });
    if (start.kind === 'lost') return 'lost';
    if (start.kind === 'over-budget') {
      log.info({ iterationId: occ.iterationId, userId: occ.userId }, 'server plan budget used up; waiting for a device');
      return 'over_budget';
    }
    const { attempt } = start;
    const startedAt = attempt.kept?.startedAt ?? now().toISOString();
    try {
      return await plan(occ, planned, attempt, agent, startedAt, signal);
    } catch (err: unknown) {
      if (signal.aborted) return 'lost';
      // The database is gone: nothing can be recorded; the lease runs out and any instance takes it over.
      if (isConnectionError(err)) throw err;
      return fail(occ, planned, attempt.attempts, messageOf(err), startedAt, agent);
    }
  }

  /** A kept reply without the steps the agent denies now (counted as dropped, never written). */
  function keptAsAllowedNow(occ: Occurrence, kept: MissionIteration, agent: Admitted): MissionIteration {
    const { iteration, dropped } = withoutDeniedSteps(kept, agent.denied);
    agents.dropped(occ, dropped.map((toolName, i) => ({ step: i + 1, toolName, why: 'denied' as const })));
    return iteration;
  }

  /** One planning attempt: the LLM (unless an earlier attempt's reply is kept), then the write-back. */
  async function plan(occ: Occurrence, planned: Planned, attempt: Attempt, agent: Admitted, startedAt: string, signal: AbortSignal): Promise<Outcome> {
    const { mission } = planned;
    let iteration = attempt.kept && keptAsAllowedNow(occ, attempt.kept, agent);
    if (!iteration) {
      const messages = await phase('preparing the prompt', async () => {
        const { resolved, skipped } = await resolveInputs(sql, deps.target.cols, occ.userId, mission.inputs);
        return buildPlannerMessages({ mission, resolvedInputs: resolved, skippedInputs: skipped, tools: agent.tools, agent: agent.prompt, now: now() });
      });
      let completion: LlmCompletion;
      try {
        completion = await deps.llm!.complete(messages, { signal });
      } catch (err: unknown) {
        if (signal.aborted) return 'lost';
        return fail(occ, planned, attempt.attempts, `LLM call failed: ${messageOf(err)}`, startedAt, agent);
      }
      // Spent whatever the reply is worth: an unusable plan cost the same tokens.
      await agent.spend(tokensSpent(completion.usage, messages, completion.content).tokens);
      const parsed = parsePlan(completion.content, TOOL_CATALOG, { denied: agent.denied });
      if (!parsed.ok) return fail(occ, planned, attempt.attempts, `unusable plan: ${parsed.reason}`, startedAt, agent);
      if (parsed.dropped) agents.dropped(occ, parsed.dropped);
      iteration = jsonbSafe(planIteration(occ.iterationId, parsed.plan, startedAt, now().toISOString()));
    }
    const made = iteration;
    // A new reply is paid for: kept ahead of the write-back, so a write-back that fails is retried from it, not from the LLM.
    const fresh = !attempt.kept;
    const outcome = await phase('write-back failed', () => writeFinal(occ, planned, made, 'planned', { agent, keep: fresh }));
    if (outcome === 'planned') log.info({ iterationId: occ.iterationId, steps: made.plan.length }, 'planned on the server');
    return outcome;
  }

  return {
    enabled: deps.llm !== null,
    plan: (occ) => registry.start(occ),
    async sweep(info) {
      const t = Date.now();
      if (info && !info.projectionChanged && t - lastDroppedCheck < DROPPED_CHECK_MS) return;
      lastDroppedCheck = t;
      for (const d of await findDroppedWrites(sql)) {
        // Written again as the agent the mission belongs to, as the first write was.
        const agent = await agentOfMission(agentSource, d.userId, { agentId: d.agentId });
        if (await rewriteDropped(sql, deps.target, d, now(), principalOf(agent))) {
          repairs.inc();
          deps.onWritten?.({ userId: d.userId, missionId: d.missionId, iterationId: d.iterationId });
          log.warn({ iterationId: d.iterationId, missionId: d.missionId }, 'a concurrent write dropped the server iteration; wrote it again');
        }
      }
    },
    idle: () => registry.idle(),
    stop: () => registry.stop(),
    handedBack: () => registry.handedBack(),
  };
}
