/**
 * The server planner's runs in flight on this instance: each occurrence
 * handed over runs once at a time, queued for a slot (fair across users),
 * under a lease the keeper extends and renews. An occurrence handed over
 * again while its run is still finishing runs again after it. Stopping
 * aborts the runs and hands their leases back, so another instance takes
 * them at once instead of when the lease runs out.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { Occurrence } from '../schedule/occurrence.js';
import { createSemaphore } from '../lib/semaphore.js';
import { isConnectionError } from '../db/errors.js';
import { handBack } from './attempts.js';
import { createLeaseKeeper } from './leases.js';

/** How long stop() waits for aborted runs to unwind before it hands their leases back anyway. */
export const STOP_WAIT_MS = 2_000;

export interface RunRegistryDeps<O extends string> {
  sql: Sql;
  log: Logger;
  holder: string;
  leaseMs: number;
  concurrency: number;
  /** One run of an occurrence; aborted when its lease is lost or the planner stops. */
  run: (occ: Occurrence, signal: AbortSignal) => Promise<O>;
  /** Counts each run's outcome ('lost' for one aborted while queued, 'error' for one that threw). */
  counted: (outcome: O | 'lost' | 'error') => void;
}

export interface RunRegistry {
  start(occ: Occurrence): void;
  /** Renews this occurrence no more, once every renewal under way has landed (before a run writes its own lease). */
  letGo(iterationId: string): Promise<void>;
  /** Resolves when nothing is in flight. */
  idle(): Promise<void>;
  /** Aborts the runs and hands their leases back; an occurrence handed over after it goes back at once. */
  stop(): Promise<void>;
  /** Resolves when the occurrences handed over after stop() have gone back (call once no scheduler pass runs). */
  handedBack(): Promise<void>;
}

export function createRunRegistry<O extends string>(deps: RunRegistryDeps<O>): RunRegistry {
  const { sql, log, holder } = deps;
  const inFlight = new Map<string, { controller: AbortController; done: Promise<void> }>();
  /** Occurrences handed over again while their run was still in flight: run again when it ends. */
  const takenAgain = new Map<string, Occurrence>();
  /** Hand-backs of occurrences handed over after stop(): a pass in flight can still take one. */
  const lateHandBacks = new Set<Promise<void>>();
  const slots = createSemaphore(deps.concurrency);
  let stopped = false;
  const leases = createLeaseKeeper({
    sql,
    log,
    holder,
    leaseMs: deps.leaseMs,
    held: () => inFlight.keys(),
    onLost: (id) => inFlight.get(id)?.controller.abort(new Error('lease lost')),
  });

  function start(occ: Occurrence): void {
    if (stopped) {
      // A pass that was still running took it (often the very lease just handed back, as expired):
      // kept, it would wait out the hand-over lease before another instance could take it.
      const back = handBack(sql, [occ.iterationId], holder)
        .catch((err: unknown) => log.warn({ err, iterationId: occ.iterationId }, 'could not hand a lease back; it expires by itself'))
        .finally(() => lateHandBacks.delete(back));
      lateHandBacks.add(back);
      return;
    }
    if (inFlight.has(occ.iterationId)) {
      // Taken again while still in flight here: its lease ran out during an outage, or the run
      // set its retry lease and is still finishing (giving back an agent slot). Keep the full
      // lease, and run it again once the run in flight ends: left alone, it would wait for
      // that whole lease (CLAIM_LEASE_MS) before anyone took it again.
      takenAgain.set(occ.iterationId, occ);
      return leases.extendSoon(occ.iterationId);
    }
    const controller = new AbortController();
    // Keyed by user: one user's backlog delays another user's plan by at most one slot.
    const done = slots
      .acquire(controller.signal, occ.userId)
      .then(
        (release) => deps.run(occ, controller.signal).finally(release),
        // Aborted while queued: the lease was lost or we are stopping.
        (): 'lost' => 'lost',
      )
      .then((outcome) => deps.counted(outcome))
      .catch((err: unknown) => {
        deps.counted('error');
        // The lease stays ours until it expires; then any instance retries. A
        // database outage fails every run in flight: the scheduler logs it once.
        if (isConnectionError(err)) log.debug({ err, iterationId: occ.iterationId }, 'server planning interrupted: database unreachable');
        else log.error({ err, iterationId: occ.iterationId }, 'server planning crashed');
      })
      .finally(() => {
        inFlight.delete(occ.iterationId);
        leases.forget(occ.iterationId);
        const again = takenAgain.get(occ.iterationId);
        takenAgain.delete(occ.iterationId);
        // A run that ended the occurrence (planned, failed, superseded) makes this one end at its first compare-and-set.
        if (again) start(again);
      });
    inFlight.set(occ.iterationId, { controller, done });
    leases.extendSoon(occ.iterationId);
  }

  return {
    start,
    letGo: (iterationId) => leases.letGo(iterationId),
    async idle() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight.values()].map((f) => f.done));
    },
    async handedBack() {
      await Promise.all([...lateHandBacks]);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      leases.stop();
      const ids = [...inFlight.keys()];
      for (const f of inFlight.values()) f.controller.abort(new Error('shutting down'));
      // Aborted runs unwind at once unless a statement holds them: wait a little, never the
      // whole shutdown grace, then hand every lease back (a run still writing keeps its row
      // lock, and its compare-and-set still holds, so handing back never makes two plans).
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...inFlight.values()].map((f) => f.done)),
        new Promise<void>((r) => (timer = setTimeout(r, STOP_WAIT_MS))),
      ]);
      clearTimeout(timer);
      // Handing back shortens the leases: no renewal under way may land after it.
      await Promise.all(ids.map((id) => leases.letGo(id)));
      await handBack(sql, ids, holder).catch((err: unknown) => log.warn({ err }, 'could not hand leases back; they expire by themselves'));
    },
  };
}
