/**
 * Web Locks (`navigator.locks`, in windows and workers): the lock named
 * `mana-ai:<iterationId>` is held while one tab or the service worker handles
 * that occurrence, so no two contexts of the origin plan it at once.
 */

export type LockManagerLike = Pick<LockManager, 'request'>;

export const LOCK_PREFIX = 'mana-ai:';

/** The context's LockManager, or null where the API is missing (old browsers, insecure origins). */
export function defaultLocks(): LockManagerLike | null {
  const nav = (globalThis as { navigator?: { locks?: LockManager } }).navigator;
  return nav?.locks ?? null;
}

export type LockResult<T> = { acquired: true; value: T } | { acquired: false };

/**
 * Runs `fn` while holding the lock `name`, or returns `{acquired:false}` at
 * once when another context holds it. Without a LockManager, `fn` just runs
 * (the IndexedDB dedup still decides who goes first).
 */
export async function withLockIfAvailable<T>(
  locks: LockManagerLike | null,
  name: string,
  fn: () => Promise<T>,
): Promise<LockResult<T>> {
  if (!locks) return { acquired: true, value: await fn() };
  return locks.request(name, { ifAvailable: true }, async (lock): Promise<LockResult<T>> => {
    if (!lock) return { acquired: false };
    return { acquired: true, value: await fn() };
  });
}
