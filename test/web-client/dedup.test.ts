import { describe, expect, it } from 'vitest';
import { createMemoryDedupStore, liveEntry, mayMark, DEDUP_STATES } from '../../web-client/src/dedup.js';

describe('dedup decisions', () => {
  it('treats garbage and expired entries as absent', () => {
    expect(liveEntry(undefined, 1000, 100)).toBeUndefined();
    expect(liveEntry({ state: 'bogus', at: 999 }, 1000, 100)).toBeUndefined();
    expect(liveEntry({ state: 'seen', at: '999' }, 1000, 100)).toBeUndefined();
    expect(liveEntry({ state: 'seen', at: 899 }, 1000, 100)).toBeUndefined();
    expect(liveEntry({ state: 'seen', at: 900 }, 1000, 100)).toEqual({ state: 'seen', at: 900 });
  });

  it('marks unless a live entry is in a blocking state', () => {
    expect(mayMark(undefined, 0, 100, DEDUP_STATES)).toBe(true);
    expect(mayMark({ state: 'seen', at: 0 }, 50, 100, DEDUP_STATES)).toBe(false);
    expect(mayMark({ state: 'elsewhere', at: 0 }, 50, 100, ['staged', 'planned'])).toBe(true);
    expect(mayMark({ state: 'planned', at: 0 }, 50, 100, ['staged', 'planned'])).toBe(false);
    expect(mayMark({ state: 'planned', at: 0 }, 500, 100, ['staged', 'planned'])).toBe(true);
  });
});

describe('memory dedup store', () => {
  it('lets exactly one of many concurrent marks win', async () => {
    const store = createMemoryDedupStore();
    const results = await Promise.all(Array.from({ length: 20 }, () => store.markIfNew('it-1', 'seen')));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await store.get('it-1'))?.state).toBe('seen');
  });

  it('expires and purges old entries', async () => {
    let now = 0;
    const store = createMemoryDedupStore({ maxAgeMs: 100, now: () => now });
    await store.markIfNew('old', 'planned');
    now = 50;
    await store.markIfNew('new', 'seen');
    now = 120;
    expect(await store.get('old')).toBeUndefined();
    expect(await store.markIfNew('old', 'seen')).toBe(true);
    now = 200;
    expect(await store.purge()).toBe(1); // 'new' (at 50) is older than 100 ms now
    expect(await store.get('old')).toEqual({ state: 'seen', at: 120 });
  });

  it('forgets and sets', async () => {
    const store = createMemoryDedupStore();
    await store.set('x', 'claimed');
    expect(await store.markIfNew('x', 'seen')).toBe(false);
    await store.forget('x');
    expect(await store.markIfNew('x', 'seen')).toBe(true);
  });
});
