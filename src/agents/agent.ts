/**
 * The agent a mission belongs to, as the coordinator reads it (app `ai`,
 * table `agents`; docs/contract.md §2). Pure: records come in as the log
 * replays them, and every field is a device's word, so each is read on its
 * own and a value the coordinator cannot use falls back to the reading that
 * plans less, never more.
 *
 * Which agent: the record the mission's `agentId` names; a mission without
 * one, or naming a record that does not exist, belongs to the default agent,
 * as in the webapp (whose actor falls back to the default agent's id). The
 * default agent is its record when the user has one, else a built-in one:
 * active, with no bounds, no policy and nothing for the prompt.
 */
import { isEncrypted } from '../projection/mission.js';
import { readPolicy, type AgentPolicy } from './policy.js';

/** The default agent's id in the webapp (also the principal of AI writes made before agents existed). */
export const DEFAULT_AGENT_ID = 'legacy:ai-default';

/** The default agent's display name in the webapp (the user may rename it). */
export const DEFAULT_AGENT_NAME = 'Mana';

/** Longest agent id looked up, in UTF-8 bytes (as record ids are bounded); a longer `agentId` is as good as none. */
export const MAX_AGENT_ID_BYTES = 1024;

/** The webapp's default for `maxConcurrentMissions` (one mission at a time). */
export const DEFAULT_MAX_CONCURRENT = 1;

export type AgentStatus = 'active' | 'paused' | 'archived' | 'deleted';

/** The plaintext parts of an agent the planning prompt shows; ciphertext is never among them. */
export interface AgentPromptParts {
  name?: string;
  role?: string;
  systemPrompt?: string;
  memory?: string;
}

export interface Agent {
  /** The record's id; DEFAULT_AGENT_ID for the default agent, with or without a record. */
  id: string;
  /** False for the built-in default agent: no record, so nothing to bound or count. */
  recorded: boolean;
  status: AgentStatus;
  /** For operators: why the status is what it is when the record did not say it plainly. */
  statusDetail?: string;
  prompt: AgentPromptParts;
  /** Prompt fields that hold ciphertext (left out of the prompt). */
  encrypted: string[];
  policy: AgentPolicy;
  /** Server plans of this agent that may run at once; null: no bound. */
  maxConcurrentMissions: number | null;
  /** Tokens the server may spend for this agent in a rolling 24 h; null: no bound. */
  maxTokensPerDay: number | null;
}

const STATES: ReadonlySet<string> = new Set(['active', 'paused', 'archived']);
const PROMPT_FIELDS = ['name', 'role', 'systemPrompt', 'memory'] as const;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A bound from the record: a finite number ≥ 0 (cut to an integer), else `otherwise`. */
function bound(value: unknown, otherwise: number | null): number | null {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) return otherwise;
  return Math.floor(value);
}

/** The built-in default agent: the one a user without any agent record has. */
export function builtInDefaultAgent(): Agent {
  return {
    id: DEFAULT_AGENT_ID,
    recorded: false,
    status: 'active',
    prompt: {},
    encrypted: [],
    policy: { kind: 'none' },
    maxConcurrentMissions: null,
    maxTokensPerDay: null,
  };
}

function statusOf(record: Record<string, unknown>): { status: AgentStatus; statusDetail?: string } {
  // Soft delete, as the webapp reads it: any truthy deletedAt.
  if (record['deletedAt']) return { status: 'deleted' };
  const state = record['state'];
  // The webapp always writes a state; a record rebuilt from updates alone may lack it.
  if (state === undefined || state === null) return { status: 'active', statusDetail: 'no state on the record: taken as active' };
  if (typeof state === 'string' && STATES.has(state)) return { status: state as AgentStatus };
  // A state this coordinator does not know (a newer webapp's?) is not permission to plan.
  const shown = typeof state === 'string' ? JSON.stringify(state.slice(0, 40)) : `a ${typeof state}`;
  return { status: 'paused', statusDetail: `unknown agent state ${shown}: not planned` };
}

/**
 * Reads one agent record (as the log replays it: `{ id, ...fields }`).
 * `id` is the id it was looked up under.
 */
export function readAgent(id: string, record: Record<string, unknown>): Agent {
  const prompt: AgentPromptParts = {};
  const encrypted: string[] = [];
  for (const field of PROMPT_FIELDS) {
    const value = record[field];
    if (isEncrypted(value)) encrypted.push(field);
    else if (typeof value === 'string' && value.trim() !== '') prompt[field] = value;
  }
  return {
    id,
    recorded: true,
    ...statusOf(record),
    prompt,
    encrypted,
    policy: readPolicy(record['policy']),
    maxConcurrentMissions: bound(record['maxConcurrentMissions'], DEFAULT_MAX_CONCURRENT),
    maxTokensPerDay: bound(record['maxTokensPerDay'], null),
  };
}

/**
 * Who a server plan is made as, in the webapp's terms: the agent's id as the
 * AI actor's principal and its name to show (the default agent's when it has
 * no plaintext one). What the write-back stamps on the rows it writes.
 */
export function principalOf(agent: Agent): { id: string; displayName: string } {
  return { id: agent.id, displayName: agent.prompt.name ?? DEFAULT_AGENT_NAME };
}

/** The mission field that names its agent. */
export const AGENT_ID_FIELD = 'agentId';

/** The agent id a mission names, or null when it names none usable (it then belongs to the default agent). */
export function missionAgentId(mission: Record<string, unknown>): string | null {
  const id = mission[AGENT_ID_FIELD];
  if (typeof id !== 'string' || id === '' || Buffer.byteLength(id) > MAX_AGENT_ID_BYTES) return null;
  return id;
}

/** The ids to look up for a mission: its own agent's (when it names one), then the default agent's. */
export function agentIdsToRead(mission: Record<string, unknown>): string[] {
  const own = missionAgentId(mission);
  return own === null || own === DEFAULT_AGENT_ID ? [DEFAULT_AGENT_ID] : [own, DEFAULT_AGENT_ID];
}

/**
 * The agent a mission belongs to, given the records found for
 * {@link agentIdsToRead} (absent: no record; a removed record counts as none).
 */
export function resolveMissionAgent(mission: Record<string, unknown>, records: ReadonlyMap<string, unknown>): Agent {
  const own = missionAgentId(mission);
  for (const id of own === null ? [DEFAULT_AGENT_ID] : [own, DEFAULT_AGENT_ID]) {
    const record = records.get(id);
    if (isPlainObject(record)) return readAgent(id, record);
  }
  return builtInDefaultAgent();
}
