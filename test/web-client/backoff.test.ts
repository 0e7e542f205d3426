import { describe, expect, it } from 'vitest';
import { backoffCeiling, backoffDelay, DEFAULT_BACKOFF } from '../../web-client/src/lib/backoff.js';

describe('backoff', () => {
  it('doubles the ceiling per attempt up to the maximum', () => {
    const opts = { baseMs: 500, maxMs: 30_000 };
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoffCeiling(n, opts))).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(backoffCeiling(10_000, opts)).toBe(30_000);
    expect(backoffCeiling(-3, opts)).toBe(500);
  });

  it('uses full jitter: anywhere from 0 to the ceiling', () => {
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 0)).toBe(0);
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 0.5)).toBe(2000);
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 0.999999)).toBe(4000);
    // A misbehaving random source stays within bounds.
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 7)).toBe(4000);
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => -1)).toBe(0);
  });

  it('never exceeds the ceiling with the real random source', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(backoffCeiling(attempt));
      }
    }
  });
});
