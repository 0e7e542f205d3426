/**
 * The rate limiter's bookkeeping with a fake clock: token-bucket answers as
 * before, and memory that follows the active users only, without any scan
 * of all buckets (buckets go with their generation once surely full).
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createRateLimiter } from '../../src/http/rate-limit.js';

function limiter(perMinute: number, burst?: number) {
  let t = 1_000_000;
  const l = createRateLimiter({ perMinute, ...(burst === undefined ? {} : { burst }), registry: new Registry(), now: () => t });
  return { l, advance: (ms: number) => (t += ms) };
}

describe('createRateLimiter', () => {
  it('passes the burst, then asks to wait until one token refilled', () => {
    const { l, advance } = limiter(60, 3);
    expect([l.take('x', 'u'), l.take('x', 'u'), l.take('x', 'u')]).toEqual([0, 0, 0]);
    expect(l.take('x', 'u')).toBe(1000);
    advance(500);
    expect(l.waitFor('x', 'u')).toBe(500);
    advance(500);
    expect(l.waitFor('x', 'u')).toBe(0);
    expect(l.take('x', 'u')).toBe(0);
    expect(l.take('y', 'u')).toBe(0);
  });

  it('a bucket keeps its state across a generation change (no free refill from rotation)', () => {
    const { l, advance } = limiter(60, 10); // a generation is the 10 s a full refill takes
    advance(9_000);
    for (let i = 0; i < 10; i++) expect(l.take('x', 'u')).toBe(0);
    advance(1_500); // rotates: the bucket moves to the previous generation with 1.5 tokens
    expect(l.take('x', 'u')).toBe(0);
    expect(l.take('x', 'u')).toBe(500);
  });

  it('memory follows the active users: 100,000 one-off users are gone two refill periods later', () => {
    const { l, advance } = limiter(60, 30); // 30 s per generation
    for (let i = 0; i < 100_000; i++) l.take('claims', `user-${i}`);
    expect(l.size()).toBe(100_000);
    advance(30_000);
    l.take('claims', 'steady');
    expect(l.size()).toBe(100_001);
    advance(30_000);
    l.take('claims', 'steady');
    expect(l.size()).toBe(1);
    // A user who comes back finds a full bucket, as they would have anyway.
    for (let i = 0; i < 30; i++) expect(l.take('claims', 'user-7')).toBe(0);
    expect(l.take('claims', 'user-7')).toBeGreaterThan(0);
  });

  it('a long silence drops both generations at once', () => {
    const { l, advance } = limiter(60, 30);
    l.take('claims', 'a');
    advance(30_000);
    l.take('claims', 'b');
    advance(65_000);
    l.take('claims', 'c');
    expect(l.size()).toBe(1);
  });
});
