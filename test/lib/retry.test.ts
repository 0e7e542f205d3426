import { describe, expect, it } from 'vitest';
import { backoffDelayMs, parseRetryAfter } from '../../src/lib/retry.js';
import { LLM_BACKOFF, RETRY_AFTER_CAP_MS } from '../../src/planner/llm-client.js';

describe('parseRetryAfter', () => {
  const now = Date.parse('2024-05-01T10:00:00Z');
  it.each([
    [null, undefined],
    [undefined, undefined],
    ['', undefined],
    ['0', 0],
    ['7', 7_000],
    ['1.5', 1_500],
    [' 3 ', 3_000],
    ['120', 120_000],
    ['Wed, 01 May 2024 10:00:30 GMT', 30_000],
    ['Wednesday, 01-May-24 10:00:30 GMT', 30_000],
    ['Wed, 01 May 2024 09:59:00 GMT', 0],
    ['soon', undefined],
    ['-5', undefined],
    ['12:00', undefined],
    ['2024-05-01T10:00:30Z', undefined],
    ['1e3', undefined],
  ])('%j → %s', (header, expected) => {
    expect(parseRetryAfter(header, now)).toBe(expected);
  });

  it('caps seconds and dates alike (the LLM client waits at most a minute)', () => {
    expect(parseRetryAfter('120', now, RETRY_AFTER_CAP_MS)).toBe(60_000);
    expect(parseRetryAfter('Wed, 01 May 2024 12:00:00 GMT', now, RETRY_AFTER_CAP_MS)).toBe(60_000);
    expect(parseRetryAfter('30', now, 60_000)).toBe(30_000);
  });

  it('reads the first of repeated headers', () => {
    expect(parseRetryAfter(['2', '9'], now)).toBe(2_000);
    expect(parseRetryAfter([], now)).toBeUndefined();
  });
});

describe('backoffDelayMs (the LLM client\'s policy)', () => {
  const policy = LLM_BACKOFF;
  it.each([
    [1, 1, 500],
    [2, 1, 1_000],
    [3, 1, 2_000],
    [7, 1, 30_000],
    [20, 1, 30_000],
    [3, 0, 0],
    [3, 0.25, 500],
    [0, 1, 500],
  ])('retry %i, random %s → %i', (retry, r, expected) => {
    expect(backoffDelayMs(retry, policy, () => r)).toBe(expected);
  });
});
