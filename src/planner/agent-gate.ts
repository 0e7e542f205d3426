/**
 * The server planner's view of a mission's agent: whether the server may
 * plan for it now, with which tools and prompt parts, and the bookkeeping
 * of its budgets. Every run asks here between reading the mission and
 * calling mana-llm; an agent that is not active, or at one of its bounds,
 * makes the occurrence wait for a device (or for the bound to free) with a
 * reason that says which.
 */
import { Counter, type Registry } from 'prom-client';
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { Agent, AgentPromptParts, AgentStatus } from '../agents/agent.js';
import { deniedToolNames, usableTools } from '../agents/policy.js';
import { markWaiting } from '../schedule/transitions.js';
import { waitBackoffMs } from '../schedule/waiting.js';
import { reason, type Reason } from '../schedule/reasons.js';
import type { Occurrence } from '../schedule/occurrence.js';
import { releaseAgentSlot, recordAgentTokens, takeAgentSlot, type CountedAgent } from './agent-budget.js';
import type { DroppedStep } from './parse.js';
import { TOOL_CATALOG, type ToolSpec } from './tools.js';

/** Values of `decision` on mana_ai_agent_decisions_total. */
export type AgentDecision = 'run' | AgentStatus | 'encrypted-policy' | 'concurrency' | 'tokens';

export type Admission =
  | {
      kind: 'admitted';
      agent: Agent;
      /** Tools to offer the model: those the agent's policy does not deny. */
      tools: readonly ToolSpec[];
      /** Catalog tools the policy denies: a step naming one is dropped. */
      denied: ReadonlySet<string>;
      prompt: AgentPromptParts;
      /** Books what one LLM reply cost (counted in metrics; in the database for an agent with a record). */
      spend(tokens: number): Promise<void>;
      /** Gives back the agent's slot; call once the run ends, whatever its outcome. */
      release(): Promise<void>;
    }
  /** The occurrence now waits (agent not active, or at a bound), or is no longer ours. */
  | { kind: 'waiting' | 'lost' };

export interface AgentGate {
  /**
   * Whether the server may plan the occurrence for this agent (the mission's, resolved from the
   * records read with it). Waits grow with the occurrence's re-routings (`routeAttempts`), like
   * every other wait for a device.
   */
  admit(occ: Occurrence, agent: Agent): Promise<Admission>;
  /** Counts and logs steps the parser dropped. */
  dropped(occ: Occurrence, steps: readonly DroppedStep[]): void;
}

export interface AgentGateDeps {
  sql: Sql;
  log: Logger;
  registry: Registry;
  /** The planner's lease holder (`server:<instance>`). */
  holder: string;
  /** Called when a plan's end woke occurrences waiting for a slot (a pass then routes them at once). */
  onWoken?: () => void;
}

const INACTIVE: Record<Exclude<AgentStatus, 'active'>, 'agent-paused' | 'agent-archived' | 'agent-deleted'> = {
  paused: 'agent-paused',
  archived: 'agent-archived',
  deleted: 'agent-deleted',
};

export function createAgentGate(deps: AgentGateDeps): AgentGate {
  const { sql, log, holder } = deps;
  const registers = [deps.registry];
  const decisions = new Counter({
    name: 'mana_ai_agent_decisions_total',
    help: "Server planning runs decided by the mission's agent: run, paused, archived, deleted, encrypted-policy, concurrency, tokens",
    labelNames: ['decision'] as const,
    registers,
  });
  const tokensSpent = new Counter({ name: 'mana_ai_llm_tokens_total', help: 'Tokens the server spent on LLM replies (as reported, else estimated from the text)', registers });
  const droppedSteps = new Counter({
    name: 'mana_ai_plan_steps_dropped_total',
    help: "Plan steps dropped before writing: the tool is unknown, or the agent's policy denies it",
    labelNames: ['why'] as const,
    registers,
  });

  async function wait(occ: Occurrence, why: Reason): Promise<'waiting' | 'lost'> {
    const moved = await markWaiting(sql, occ.iterationId, { from: ['planning'], holder, reason: why, retryInMs: waitBackoffMs(occ.routeAttempts) });
    return moved ? 'waiting' : 'lost';
  }

  /** Gives back this run's slot, if it holds one, and wakes the agent's waiters for the slots free now. */
  async function wake(counted: CountedAgent, iterationId: string): Promise<void> {
    const woken = await releaseAgentSlot(sql, iterationId, counted, holder);
    if (woken > 0) deps.onWoken?.();
  }

  async function admit(occ: Occurrence, agent: Agent): Promise<Admission> {
    if (agent.status !== 'active') {
      decisions.inc({ decision: agent.status });
      const detail = `agent ${agent.id} is ${agent.status}${agent.statusDetail ? ` (${agent.statusDetail})` : ''}: the server does not plan its missions`;
      log.info({ iterationId: occ.iterationId, agentId: agent.id, status: agent.status }, 'agent not active; not planning');
      return { kind: await wait(occ, reason(INACTIVE[agent.status], detail)) };
    }
    if (agent.policy.kind === 'encrypted') {
      // Which tools it allows is only readable on a device; offering any could offer a denied one.
      decisions.inc({ decision: 'encrypted-policy' });
      return { kind: await wait(occ, reason('agent-encrypted', `agent ${agent.id}: its policy is end-to-end encrypted, only a device can plan for it`)) };
    }
    const counted: CountedAgent | null = agent.recorded
      ? { userId: occ.userId, agentId: agent.id, maxConcurrentMissions: agent.maxConcurrentMissions, maxTokensPerDay: agent.maxTokensPerDay }
      : null;
    if (counted) {
      const take = await takeAgentSlot(sql, { iterationId: occ.iterationId, attempts: occ.routeAttempts }, counted, { holder });
      if (take.kind === 'lost') return { kind: 'lost' };
      if (take.kind === 'held') {
        decisions.inc({ decision: take.bound });
        log.info({ iterationId: occ.iterationId, agentId: agent.id, bound: take.bound }, 'agent at its bound; waiting');
        // Out of tokens: the next waiter for a slot would be held too; woken now, it says so (and waits for the tokens, not its backoff).
        if (take.bound === 'tokens') await wake(counted, occ.iterationId);
        return { kind: 'waiting' };
      }
    }
    decisions.inc({ decision: 'run' });
    if (agent.encrypted.length > 0) log.debug({ iterationId: occ.iterationId, agentId: agent.id, fields: agent.encrypted }, 'agent fields encrypted; left out of the prompt');
    let released = false;
    return {
      kind: 'admitted',
      agent,
      tools: usableTools(agent.policy, TOOL_CATALOG),
      denied: deniedToolNames(agent.policy, TOOL_CATALOG),
      prompt: agent.prompt,
      async spend(tokens) {
        tokensSpent.inc(tokens);
        if (!counted) return;
        await recordAgentTokens(sql, occ.iterationId, counted, tokens);
      },
      async release() {
        if (!counted || released) return;
        released = true;
        await wake(counted, occ.iterationId);
      },
    };
  }

  return {
    admit,
    dropped(occ, steps) {
      if (steps.length === 0) return;
      for (const s of steps) droppedSteps.inc({ why: s.why });
      // Tool names come from the model: clipped, never a whole reply in the log.
      const sample = steps.slice(0, 5).map((s) => ({ step: s.step, tool: s.toolName.slice(0, 60), why: s.why }));
      log.warn({ iterationId: occ.iterationId, dropped: steps.length, sample }, 'plan steps dropped: unknown tool, or denied to the agent');
    },
  };
}
