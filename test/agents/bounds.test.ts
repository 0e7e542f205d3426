/**
 * An agent's bounds as decisions, and what one LLM reply cost.
 */
import { describe, expect, it } from 'vitest';
import { checkBounds, MAX_TOKENS_PER_REPLY, readUsage, tokensSpent } from '../../src/agents/bounds.js';

describe('checkBounds', () => {
  it.each([
    [{ running: 0, tokensUsed: 0 }, { maxConcurrentMissions: 1, maxTokensPerDay: null }, 'ok'],
    [{ running: 1, tokensUsed: 0 }, { maxConcurrentMissions: 1, maxTokensPerDay: null }, 'concurrency'],
    [{ running: 1, tokensUsed: 0 }, { maxConcurrentMissions: 2, maxTokensPerDay: null }, 'ok'],
    [{ running: 0, tokensUsed: 0 }, { maxConcurrentMissions: 0, maxTokensPerDay: null }, 'concurrency'],
    [{ running: 99, tokensUsed: 0 }, { maxConcurrentMissions: null, maxTokensPerDay: null }, 'ok'],
    [{ running: 0, tokensUsed: 999 }, { maxConcurrentMissions: 1, maxTokensPerDay: 1000 }, 'ok'],
    [{ running: 0, tokensUsed: 1000 }, { maxConcurrentMissions: 1, maxTokensPerDay: 1000 }, 'tokens'],
    [{ running: 0, tokensUsed: 0 }, { maxConcurrentMissions: 1, maxTokensPerDay: 0 }, 'tokens'],
    // Out of tokens and of slots: the tokens say it, so the plan does not queue for a slot it may not use.
    [{ running: 5, tokensUsed: 5000 }, { maxConcurrentMissions: 1, maxTokensPerDay: 1000 }, 'tokens'],
  ] as const)('%j under %j → %s', (use, bounds, verdict) => {
    expect(checkBounds(use, bounds)).toBe(verdict);
  });
});

describe('readUsage', () => {
  it('reads the counts OpenAI-compatible servers report', () => {
    expect(readUsage({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 })).toEqual({ promptTokens: 10, completionTokens: 5, totalTokens: 15 });
  });

  it.each([[undefined], [null], ['15'], [[15]], [{}], [{ total_tokens: -1 }], [{ total_tokens: 'many' }], [{ total_tokens: Number.NaN }]])('%j → nothing', (raw) => {
    expect(readUsage(raw)).toBeUndefined();
  });

  it('keeps the usable counts of a partly odd object', () => {
    expect(readUsage({ prompt_tokens: 12.9, completion_tokens: 'x' })).toEqual({ promptTokens: 12 });
  });
});

describe('tokensSpent', () => {
  const sent = [{ content: 'a'.repeat(400) }, { content: 'b'.repeat(396) }];

  it('the reported total', () => {
    expect(tokensSpent({ totalTokens: 734, promptTokens: 1, completionTokens: 1 }, sent, 'reply')).toEqual({ tokens: 734, estimated: false });
  });

  it('prompt + completion when there is no total', () => {
    expect(tokensSpent({ promptTokens: 700, completionTokens: 34 }, sent, 'reply')).toEqual({ tokens: 734, estimated: false });
  });

  it('an estimate from the characters when nothing is reported: about 4 per token', () => {
    expect(tokensSpent(undefined, sent, 'c'.repeat(4))).toEqual({ tokens: 200, estimated: true });
  });

  it('never more than the column holds', () => {
    expect(tokensSpent({ totalTokens: 1e12 }, sent, '').tokens).toBe(MAX_TOKENS_PER_REPLY);
  });
});
