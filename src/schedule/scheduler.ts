/**
 * The loop: every interval (and exactly when the earliest known nextRunAt
 * arrives) run one pass. Passes never overlap: a trigger during a pass runs
 * one more pass right after it, coalescing further triggers.
 *
 * The interval runs from one pass's start to the next's: a row committed
 * just after a pass read the log waits at most one interval plus one pass,
 * and a pass longer than the interval (a stream of writes) is followed at
 * once. Counting from the end made the lag the interval plus two passes. A
 * failed pass waits a whole interval from its end, so a database outage is
 * not hammered.
 */
import type { Logger } from '../log.js';

export interface PassResult<S> {
  stats: S;
  /** When the next mission falls due, if known; the loop wakes then. */
  nextDueAt: Date | null;
}

export interface SchedulerDeps<S> {
  runPass: () => Promise<PassResult<S>>;
  intervalMs: number;
  log: Logger;
  now?: () => number;
  onError?: (err: unknown) => void;
  onSuccess?: () => void;
}

export type SchedulerState = 'idle' | 'running' | 'stopped';

export interface Scheduler<S> {
  start(): void;
  /** Runs a pass now (after the one in flight, if any) and returns its stats. */
  runOnce(): Promise<S>;
  stop(): Promise<void>;
  state(): { state: SchedulerState; enabled: boolean; lastPassAt: string | null; lastError: string | null; nextWakeAt: string | null };
}

/** Timers above this are clamped (setTimeout overflows at 2^31-1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function createScheduler<S>(deps: SchedulerDeps<S>): Scheduler<S> {
  const now = deps.now ?? Date.now;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<S> | undefined;
  let queued: Promise<S> | undefined;
  let enabled = false;
  let stopped = false;
  let lastPassAt: number | null = null;
  let lastError: string | null = null;
  let nextWakeAt: number | null = null;

  /** `from`: when the interval started (the pass's start; its end after a failure). */
  function arm(nextDue: Date | null, from: number): void {
    if (!enabled || stopped) return;
    clearTimeout(timer);
    const t = now();
    let wake = Math.max(t, from + deps.intervalMs);
    if (nextDue && nextDue.getTime() < wake) wake = Math.max(t, nextDue.getTime());
    nextWakeAt = wake;
    timer = setTimeout(() => void tick(), Math.min(MAX_TIMER_MS, wake - t));
    timer.unref?.();
  }

  async function pass(): Promise<S> {
    const startedAt = now();
    try {
      const result = await deps.runPass();
      lastError = null;
      deps.onSuccess?.();
      arm(result.nextDueAt, startedAt);
      return result.stats;
    } catch (err: unknown) {
      lastError = err instanceof Error ? err.message : String(err);
      deps.onError?.(err);
      arm(null, now());
      throw err;
    } finally {
      lastPassAt = now();
    }
  }

  function runOnce(): Promise<S> {
    if (stopped) return Promise.reject(new Error('scheduler stopped'));
    if (!inFlight) {
      inFlight = pass().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    }
    // A pass is running: coalesce every trigger into one follow-up pass.
    queued ??= inFlight
      .catch(() => undefined)
      .then(() => {
        queued = undefined;
        return runOnce();
      });
    return queued;
  }

  async function tick(): Promise<void> {
    try {
      await runOnce();
    } catch {
      /* reported through onError; the loop re-arms itself */
    }
  }

  return {
    start() {
      if (enabled || stopped) return;
      enabled = true;
      void tick();
    },
    runOnce,
    async stop() {
      if (stopped) return;
      stopped = true;
      enabled = false;
      clearTimeout(timer);
      await Promise.allSettled([inFlight, queued]);
    },
    state() {
      return {
        state: stopped ? 'stopped' : inFlight ? 'running' : 'idle',
        enabled,
        lastPassAt: lastPassAt === null ? null : new Date(lastPassAt).toISOString(),
        lastError,
        nextWakeAt: nextWakeAt === null || !enabled ? null : new Date(nextWakeAt).toISOString(),
      };
    },
  };
}
