/**
 * The one counting semaphore: at most `limit` holders at once. Waiters are
 * grouped by a key (a user, say) and served round-robin across keys, FIFO
 * within a key, so a key with a long backlog delays another key's waiter by
 * at most one grant. Without keys it is a plain FIFO semaphore.
 */

/** Gives the slot back; calling it twice is harmless. */
export type Release = () => void;

export interface Semaphore {
  /**
   * Waits for a slot. `key` groups waiters for round-robin service (default:
   * one shared group). Rejects with the signal's reason if aborted while waiting.
   */
  acquire(signal?: AbortSignal, key?: string): Promise<Release>;
  /** Slots currently held. */
  held(): number;
  /** Callers waiting for a slot. */
  waiting(): number;
}

interface Waiter {
  grant: (release: Release) => void;
}

/** Creates a semaphore with `limit` slots (an integer ≥ 1). */
export function createSemaphore(limit: number): Semaphore {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`semaphore limit must be an integer >= 1, got ${limit}`);
  let active = 0;
  let queued = 0;
  // Map order is the rotation: the key at the front is served next, then moves to the back.
  const rotation = new Map<string, Waiter[]>();

  function nextWaiter(): Waiter | undefined {
    for (const [key, waiters] of rotation) {
      const next = waiters.shift();
      rotation.delete(key);
      if (waiters.length > 0) rotation.set(key, waiters);
      if (next) {
        queued--;
        return next;
      }
    }
    return undefined;
  }

  function releaser(): Release {
    let released = false;
    return function release() {
      if (released) return;
      released = true;
      const next = nextWaiter();
      // Hand the slot straight to the next waiter so `active` never dips and
      // a caller arriving in between cannot jump the queue.
      if (next) next.grant(releaser());
      else active--;
    };
  }

  function acquire(signal?: AbortSignal, key = ''): Promise<Release> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (active < limit) {
      active++;
      return Promise.resolve(releaser());
    }
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        grant(release) {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      function onAbort() {
        const waiters = rotation.get(key);
        const i = waiters?.indexOf(waiter) ?? -1;
        if (waiters && i >= 0) {
          waiters.splice(i, 1);
          queued--;
          if (waiters.length === 0) rotation.delete(key);
        }
        reject(signal?.reason);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      const waiters = rotation.get(key);
      if (waiters) waiters.push(waiter);
      else rotation.set(key, [waiter]);
      queued++;
    });
  }

  return {
    acquire,
    held: function held() {
      return active;
    },
    waiting: function waiting() {
      return queued;
    },
  };
}
