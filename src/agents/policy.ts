/**
 * An agent's tool policy as the coordinator reads it, and which tools it
 * leaves the server planner. Pure.
 *
 * The webapp decides a tool for an AI actor in this order: the policy's
 * entry for the tool's name, else its entry for the tool's module, else its
 * global default; only `deny` refuses, and it refuses at execution time —
 * after the server's plan has arrived. So the server offers the model only
 * tools the policy does not deny, and drops a step naming one anyway.
 *
 * Records come from devices: a policy that is not readable as rules is never
 * taken as permission. Where the webapp itself would fail every step (a
 * policy that is not an object), nothing is usable; ciphertext is left to a
 * device, which can decrypt it.
 */
import { isEncrypted } from '../projection/mission.js';

export type PolicyDecision = 'auto' | 'propose' | 'deny';

const DECISIONS: ReadonlySet<string> = new Set<PolicyDecision>(['auto', 'propose', 'deny']);

/** What the server needs of a tool to decide it: its name and the webapp module that owns it. */
export interface PolicyTool {
  readonly name: string;
  readonly module: string;
}

export interface PolicyRules {
  readonly tools: ReadonlyMap<string, PolicyDecision>;
  readonly byModule: ReadonlyMap<string, PolicyDecision>;
  readonly fallback: PolicyDecision;
}

export type AgentPolicy =
  /** No policy on the record: the webapp's defaults, which deny none of the server's tools. */
  | { kind: 'none' }
  | { kind: 'rules'; rules: PolicyRules }
  /** End-to-end encrypted: only a device can read it. */
  | { kind: 'encrypted' }
  /** Present but not an object: the webapp cannot apply it either, so no tool is usable. */
  | { kind: 'unreadable'; detail: string };

/** The webapp's global default when a policy names none (its built-in policy's). */
export const DEFAULT_DECISION: PolicyDecision = 'propose';

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Entries whose value is a known decision. Another value is skipped, so the
 * next level decides: that can only deny where the webapp would not (it
 * treats any value but `deny` as permission), never the other way round.
 */
function decisionsOf(raw: unknown): ReadonlyMap<string, PolicyDecision> {
  const out = new Map<string, PolicyDecision>();
  if (!isPlainObject(raw)) return out;
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value === 'string' && DECISIONS.has(value)) out.set(key, value as PolicyDecision);
  }
  return out;
}

/** Reads an agent record's `policy` field, whatever a device wrote there. */
export function readPolicy(raw: unknown): AgentPolicy {
  if (raw === undefined || raw === null) return { kind: 'none' };
  if (isEncrypted(raw)) return { kind: 'encrypted' };
  if (!isPlainObject(raw)) return { kind: 'unreadable', detail: `policy is ${Array.isArray(raw) ? 'an array' : `a ${typeof raw}`}, not an object` };
  const fallback = raw['defaultForAi'];
  return {
    kind: 'rules',
    rules: {
      tools: decisionsOf(raw['tools']),
      byModule: decisionsOf(raw['defaultsByModule']),
      fallback: typeof fallback === 'string' && DECISIONS.has(fallback) ? (fallback as PolicyDecision) : DEFAULT_DECISION,
    },
  };
}

/** The decision for one tool: by name, else by module, else the policy's default. */
export function decideTool(policy: AgentPolicy, tool: PolicyTool): PolicyDecision {
  switch (policy.kind) {
    case 'none':
      return DEFAULT_DECISION;
    case 'encrypted':
    case 'unreadable':
      return 'deny';
    case 'rules':
      return policy.rules.tools.get(tool.name) ?? policy.rules.byModule.get(tool.module) ?? policy.rules.fallback;
  }
}

/** The tools of `catalog` the policy does not deny, in catalog order. */
export function usableTools<T extends PolicyTool>(policy: AgentPolicy, catalog: readonly T[]): T[] {
  return catalog.filter((t) => decideTool(policy, t) !== 'deny');
}

/** The names of the tools of `catalog` the policy denies. */
export function deniedToolNames(policy: AgentPolicy, catalog: readonly PolicyTool[]): ReadonlySet<string> {
  return new Set(catalog.filter((t) => decideTool(policy, t) === 'deny').map((t) => t.name));
}
