/**
 * An agent's budgets as decisions: whether one more server plan may start,
 * and how many tokens one LLM reply cost. Pure; the counts come from the
 * database (src/planner/agent-budget.ts), so every instance decides on the
 * same numbers.
 */

/** The window `maxTokensPerDay` counts over: a rolling day. */
export const TOKEN_WINDOW_MS = 86_400_000;

/** Largest token count one reply is booked at (the column is a 32-bit integer). */
export const MAX_TOKENS_PER_REPLY = 2_147_483_647;

/** Characters per token when mana-llm reports no usage: the usual rule of thumb for English text. */
export const CHARS_PER_TOKEN = 4;

export interface AgentUse {
  /** Plans of the agent running now, on any instance, this occurrence's own not counted. */
  running: number;
  /** Tokens spent for the agent in the last 24 h. */
  tokensUsed: number;
}

export interface AgentBounds {
  maxConcurrentMissions: number | null;
  maxTokensPerDay: number | null;
}

/**
 * 'ok', or the bound that holds the plan back. Tokens first: an agent whose
 * day is spent must not queue for a slot it may not use.
 */
export function checkBounds(use: AgentUse, bounds: AgentBounds): 'ok' | 'tokens' | 'concurrency' {
  if (bounds.maxTokensPerDay !== null && use.tokensUsed >= bounds.maxTokensPerDay) return 'tokens';
  if (bounds.maxConcurrentMissions !== null && use.running >= bounds.maxConcurrentMissions) return 'concurrency';
  return 'ok';
}

/** Token counts an LLM reply reports (OpenAI's `usage`), read defensively. */
export interface TokenUsage {
  promptTokens?: number;
  completionTokens?: number;
  totalTokens?: number;
}

const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : undefined);

/** The `usage` object of a chat completion reply, or undefined when it carries no usable count. */
export function readUsage(raw: unknown): TokenUsage | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  const usage: TokenUsage = {};
  const prompt = count(r['prompt_tokens']);
  const completion = count(r['completion_tokens']);
  const total = count(r['total_tokens']);
  if (prompt !== undefined) usage.promptTokens = prompt;
  if (completion !== undefined) usage.completionTokens = completion;
  if (total !== undefined) usage.totalTokens = total;
  return Object.keys(usage).length > 0 ? usage : undefined;
}

/**
 * What one reply cost: its reported total, else prompt + completion, else
 * (no usage reported) an estimate from the characters sent and received, so
 * a mana-llm that reports nothing still cannot spend without bound.
 */
export function tokensSpent(usage: TokenUsage | undefined, sent: readonly { content: string }[], received: string): { tokens: number; estimated: boolean } {
  const reported = usage?.totalTokens ?? (usage?.promptTokens !== undefined || usage?.completionTokens !== undefined ? (usage.promptTokens ?? 0) + (usage.completionTokens ?? 0) : undefined);
  if (reported !== undefined) return { tokens: Math.min(reported, MAX_TOKENS_PER_REPLY), estimated: false };
  const chars = sent.reduce((n, m) => n + m.content.length, 0) + received.length;
  return { tokens: Math.min(Math.ceil(chars / CHARS_PER_TOKEN), MAX_TOKENS_PER_REPLY), estimated: true };
}
