/**
 * Keeps the leases of the occurrences this instance's server planner holds:
 * the full lease right after they are taken (they are handed over with a
 * short one, so a crash before planning starts costs seconds), and a renewal
 * every third of a lease while they run.
 *
 * A run that ends by setting a shorter lease of its own (a retry after the
 * backoff) must not have it overwritten by a renewal that was issued earlier
 * but lands later — a renewal waits for a pool connection, and postgres.js
 * may pipeline it behind a slow statement while the run's own statements go
 * out on other connections. Left alone, that renewal stretches a 1-minute
 * retry into the whole lease (CLAIM_LEASE_MS). So a run hands its lease back
 * to the keeper (`letGo`) first: it is renewed no more, and every renewal
 * already under way has landed before the run writes its own lease.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { isConnectionError } from '../db/errors.js';
import { renewLeases } from './attempts.js';

export interface LeaseKeeperDeps {
  sql: Sql;
  log: Logger;
  holder: string;
  leaseMs: number;
  /** The occurrences whose runs are in flight here. */
  held: () => Iterable<string>;
  /** The lease is no longer ours (superseded, completed, taken over): stop spending on it. */
  onLost: (iterationId: string) => void;
}

export interface LeaseKeeper {
  /**
   * Gives a just-taken occurrence its full lease (batched with the others taken in the same turn).
   * A take comes after any lease a finished run wrote (it found that lease expired), so it holds again.
   */
  extendSoon(iterationId: string): void;
  /** Renews this occurrence no more, and resolves once every renewal under way has landed. */
  letGo(iterationId: string): Promise<void>;
  /** Its run ended: a new run of the same occurrence is renewed again. */
  forget(iterationId: string): void;
  stop(): void;
}

export function createLeaseKeeper(deps: LeaseKeeperDeps): LeaseKeeper {
  const { sql, log, holder } = deps;
  const letGo = new Set<string>();
  const taken = new Set<string>();
  const underWay = new Set<Promise<void>>();
  let extending = false;

  const held = (ids: Iterable<string>): string[] => [...ids].filter((id) => !letGo.has(id));

  function renew(ids: string[]): void {
    if (ids.length === 0) return;
    const p = renewLeases(sql, ids, holder, deps.leaseMs)
      .then((kept) => {
        for (const id of ids) if (!kept.has(id) && !letGo.has(id)) deps.onLost(id);
      })
      .catch((err: unknown) => {
        // A database outage is reported once by the scheduler; not again every renewal.
        if (isConnectionError(err)) log.debug({ err }, 'lease renewal failed: database unreachable');
        else log.warn({ err }, 'lease renewal failed');
      })
      .finally(() => underWay.delete(p));
    underWay.add(p);
  }

  const timer = setInterval(() => renew(held(deps.held())), Math.max(200, Math.floor(deps.leaseMs / 3)));
  timer.unref();

  return {
    extendSoon(iterationId) {
      letGo.delete(iterationId);
      taken.add(iterationId);
      if (extending) return;
      extending = true;
      setImmediate(() => {
        extending = false;
        const inFlight = new Set(deps.held());
        const ids = held(taken).filter((id) => inFlight.has(id));
        taken.clear();
        renew(ids);
      });
    },
    async letGo(iterationId) {
      letGo.add(iterationId);
      taken.delete(iterationId);
      await Promise.allSettled([...underWay]);
    },
    forget(iterationId) {
      letGo.delete(iterationId);
    },
    stop() {
      clearInterval(timer);
    },
  };
}
