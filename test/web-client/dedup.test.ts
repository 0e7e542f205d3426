import { describe, expect, it } from 'vitest';
import { clearedFor, createMemoryDedupStore, liveEntry, mayMark, openDedupStore, withMemoryFallback, type DedupEntry, type DedupStore } from '../../web-client/src/lib/dedup.js';

const blocksAll = () => true;
const blocksDone = (e: DedupEntry) => e.state === 'staged' || e.state === 'planned';

describe('dedup decisions', () => {
  it('treats garbage and expired entries as absent', () => {
    expect(liveEntry(undefined, 1000, 100)).toBeUndefined();
    expect(liveEntry({ state: 'bogus', at: 999 }, 1000, 100)).toBeUndefined();
    expect(liveEntry({ state: 'seen', at: '999' }, 1000, 100)).toBeUndefined();
    expect(liveEntry({ state: 'seen', at: 899 }, 1000, 100)).toBeUndefined();
    expect(liveEntry({ state: 'seen', at: 900 }, 1000, 100)).toEqual({ state: 'seen', at: 900 });
  });

  it('marks unless the live entry blocks it', () => {
    expect(mayMark(undefined, 0, 100, blocksAll)).toBe(true);
    expect(mayMark({ state: 'seen', at: 0 }, 50, 100, blocksAll)).toBe(false);
    expect(mayMark({ state: 'elsewhere', at: 0 }, 50, 100, blocksDone)).toBe(true);
    expect(mayMark({ state: 'planned', at: 0 }, 50, 100, blocksDone)).toBe(false);
    expect(mayMark({ state: 'planned', at: 0 }, 500, 100, blocksDone)).toBe(true);
  });

  it("sign-out forgets the user's entries and those that name no user, never another user's", () => {
    expect(clearedFor({ state: 'planned', at: 0, user: 'alice' }, 'alice')).toBe(true);
    expect(clearedFor({ state: 'planned', at: 0 }, 'alice')).toBe(true);
    expect(clearedFor({ state: 'planned', at: 0, user: 'bob' }, 'alice')).toBe(false);
    expect(clearedFor({ state: 'planned', at: 0, user: 'bob' }, undefined)).toBe(false);
  });
});

describe('memory dedup store', () => {
  it('lets exactly one of many concurrent conditional marks win', async () => {
    const store = createMemoryDedupStore();
    const results = await Promise.all(Array.from({ length: 20 }, () => store.markUnless('it-1', { state: 'claimed' }, blocksAll)));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await store.get('it-1'))?.state).toBe('claimed');
  });

  it('expires and purges old entries', async () => {
    let now = 0;
    const store = createMemoryDedupStore({ maxAgeMs: 100, now: () => now });
    await store.set('old', { state: 'planned' });
    now = 50;
    await store.set('new', { state: 'claimed' });
    now = 120;
    expect(await store.get('old')).toBeUndefined();
    expect(await store.markUnless('old', { state: 'claimed', attempt: 2 }, blocksAll)).toBe(true);
    now = 200;
    expect(await store.purge()).toBe(1); // 'new' (at 50) is older than 100 ms now
    expect(await store.get('old')).toEqual({ state: 'claimed', attempt: 2, at: 120 });
  });

  it('forgets, sets, and clears one user', async () => {
    const store = createMemoryDedupStore();
    await store.set('x', { state: 'claimed', user: 'alice' });
    await store.set('y', { state: 'planned', user: 'bob' });
    await store.set('z', { state: 'planned' });
    expect(await store.markUnless('x', { state: 'claimed' }, blocksAll)).toBe(false);
    await store.forget('x');
    expect(await store.markUnless('x', { state: 'claimed', user: 'alice' }, blocksAll)).toBe(true);
    expect(await store.clear('alice')).toBe(2);
    expect(await store.get('y')).toMatchObject({ user: 'bob' });
    expect(await store.get('x')).toBeUndefined();
  });
});

describe('a store that fails (IndexedDB: quota, private mode, a lost connection)', () => {
  it('falls back to memory for the rest of the context, says so once, and keeps working', async () => {
    const warnings: unknown[] = [];
    const broken: DedupStore = {
      get: () => Promise.reject(new Error('QuotaExceededError')),
      markUnless: () => Promise.reject(new Error('QuotaExceededError')),
      set: () => Promise.reject(new Error('QuotaExceededError')),
      forget: () => Promise.reject(new Error('QuotaExceededError')),
      clear: () => Promise.reject(new Error('QuotaExceededError')),
      purge: () => Promise.reject(new Error('QuotaExceededError')),
      close: () => undefined,
    };
    const store = withMemoryFallback(broken, (e) => warnings.push(e));
    expect(await store.get('a')).toBeUndefined();
    await store.set('a', { state: 'planned' });
    expect((await store.get('a'))?.state).toBe('planned');
    expect(await store.markUnless('a', { state: 'claimed' }, blocksAll)).toBe(false);
    expect(warnings).toHaveLength(1);
  });

  it('a database that will not open falls back too (the factory throws)', async () => {
    const warnings: unknown[] = [];
    const factory = { open: () => { throw new DOMException('blocked', 'InvalidStateError'); } } as unknown as IDBFactory;
    const store = withMemoryFallback(openDedupStore({ indexedDB: factory }), (e) => warnings.push(e));
    expect(await store.markUnless('a', { state: 'staging' }, blocksAll)).toBe(true);
    expect(await store.markUnless('a', { state: 'staging' }, blocksAll)).toBe(false);
    expect(warnings).toHaveLength(1);
  });
});
