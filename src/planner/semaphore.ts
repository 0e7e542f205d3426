/**
 * A small FIFO counting semaphore: at most `limit` holders at once, waiters
 * served in arrival order so no caller starves behind later ones.
 */

/** Gives the slot back; calling it twice is harmless. */
export type Release = () => void;

export interface Semaphore {
  /** Waits for a slot. Rejects with the signal's reason if aborted while waiting. */
  acquire(signal?: AbortSignal): Promise<Release>;
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
  const queue: Waiter[] = [];

  function releaser(): Release {
    let released = false;
    return function release() {
      if (released) return;
      released = true;
      const next = queue.shift();
      // Hand the slot straight to the next waiter so `active` never dips and
      // a caller arriving in between cannot jump the queue.
      if (next) next.grant(releaser());
      else active--;
    };
  }

  function acquire(signal?: AbortSignal): Promise<Release> {
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
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        reject(signal?.reason);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      queue.push(waiter);
    });
  }

  return {
    acquire,
    held: function held() {
      return active;
    },
    waiting: function waiting() {
      return queue.length;
    },
  };
}
