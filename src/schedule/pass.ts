/**
 * One scheduler pass: refresh the projection, scan for due missions, hand
 * them to dispatch. A failing dispatch is logged and counted; it never
 * blocks the rest of the pass.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Projection, RefreshStats } from '../projection/refresh.js';
import { TOUCHED_CAP } from '../projection/pass-tally.js';
import { keyOf } from '../projection/snapshot-store.js';
import { scanDue, type Scan, type ScanOptions, type ScanPoint } from './due.js';
import type { PassResult } from './scheduler.js';
import type { Dispatch, Prepare, Sweep } from './interfaces.js';

export type { Dispatch, Prepare, Sweep, SweepInfo } from './interfaces.js';

export interface PassStats {
  rowsApplied: number;
  rowsSkipped: number;
  missionsDue: number;
  projectionRan: boolean;
  projectionStalled: boolean;
  durationMs: number;
}

export interface PassDeps {
  sql: Sql;
  projection: Projection;
  dispatch: Dispatch;
  sweep?: Sweep;
  /** With prepareWithinMs: missions due within that long after the scan go here. */
  prepare?: Prepare;
  prepareWithinMs?: number;
  metrics: Metrics;
  log: Logger;
  dueLimit?: number;
  /** Default FULL_SCAN_MS. */
  fullScanMs?: number;
}

/** Every pass scans past what the previous one saw; every this often, all due missions again. */
export const FULL_SCAN_MS = 10_000;

/** How often the sweep runs while a backlog of due missions makes passes follow at once. */
export const BACKLOG_SWEEP_MS = 5000;

export function logOnlyDispatch(log: Logger): Dispatch {
  return async function logDue(due) {
    for (const d of due) log.info({ userId: d.userId, missionId: d.missionId, nextRunAt: d.nextRunAt }, 'mission due');
  };
}

export function createPass(deps: PassDeps): () => Promise<PassResult<PassStats>> {
  const { metrics, log } = deps;
  /** Missions due up to here were offered to prepare by an earlier pass (epoch ms). */
  let preparedThroughMs = 0;
  let lastSweep = -Infinity;
  /** The projection changed since the last sweep ran (a skipped sweep's change is not lost), and which missions (keyOf; null: too many). */
  let changedSinceSweep = false;
  let missionsSinceSweep: Map<string, { userId: string; missionId: string }> | null = new Map();
  /** Every due mission up to this point of the scan order was dispatched, or had its occurrence. */
  let seenThrough: ScanPoint | undefined;
  let lastFullScan = -Infinity;
  /**
   * A refresh applied rows that no completed scan has looked at yet: a pass
   * that failed between its refresh and its scan leaves this set, so the next
   * pass (whose refresh finds nothing new) still scans everything.
   */
  let unscanned = false;

  /**
   * A pass scans only past what the previous one saw, unless missions changed
   * since the last scan (a mission may now be due at an instant already
   * passed), the previous dispatch failed or held some back, or FULL_SCAN_MS passed (another
   * instance that projected a change and then failed is caught up then).
   * After the top of an hour, 100,000 handled missions stay due until they
   * are planned; checking each for its occurrence cost every pass ~0.5 s.
   */
  function scanFrom(missionsChanged: boolean): { from: ScanPoint | undefined; fullAt: number | undefined } {
    const now = performance.now();
    if (missionsChanged || !seenThrough || now - lastFullScan >= (deps.fullScanMs ?? FULL_SCAN_MS)) return { from: undefined, fullAt: now };
    return { from: seenThrough, fullAt: undefined };
  }
  async function sweep(upkeep: Scan['upkeep'], backlog: boolean): Promise<void> {
    if (!deps.sweep) return;
    lastSweep = performance.now();
    const projectionChanged = changedSinceSweep;
    const changed = missionsSinceSweep ? [...missionsSinceSweep.values()] : null;
    changedSinceSweep = false;
    missionsSinceSweep = new Map();
    try {
      await deps.sweep({ projectionChanged, changed, backlog, ...upkeep });
    } catch (err: unknown) {
      log.error({ err }, 'occurrence sweep failed');
    }
  }

  /** Adds the missions a refresh changed to those the next sweep settles; null once too many to list. */
  function noteChanged(changed: RefreshStats['changed']): void {
    if (changed === null || missionsSinceSweep === null) {
      missionsSinceSweep = null;
      return;
    }
    for (const m of changed) missionsSinceSweep.set(keyOf(m.userId, m.missionId), m);
    if (missionsSinceSweep.size > TOUCHED_CAP) missionsSinceSweep = null;
  }

  /**
   * The look-ahead the due scan also runs: missions due within prepareWithinMs,
   * past what earlier passes covered unless missions changed (each pass
   * rescanning thousands of readied missions kept Postgres busy at their instant).
   */
  function lookAhead(missionsChanged: boolean): ScanOptions['upcoming'] {
    if (!deps.prepare || !deps.prepareWithinMs) return undefined;
    const after = missionsChanged || preparedThroughMs === 0 ? undefined : new Date(preparedThroughMs).toISOString();
    return { withinMs: deps.prepareWithinMs, ...(after ? { after } : {}) };
  }

  async function prepare(scan: Scan): Promise<void> {
    if (!deps.prepare || !deps.prepareWithinMs) return;
    try {
      await deps.prepare(scan.upcoming);
      preparedThroughMs = Date.parse(scan.at) + deps.prepareWithinMs;
    } catch (err: unknown) {
      log.error({ err }, 'preparing upcoming missions failed; they are dispatched when due');
    }
  }

  return async function runPass() {
    const started = performance.now();
    const endTimer = metrics.tickDuration.startTimer();
    const dueLimit = deps.dueLimit ?? 20_000;
    const unhandledOnly = deps.sweep !== undefined;
    /** Starts the due scan; the full scan counts as done (lastFullScan) once the pass uses it. */
    const startScan = () => {
      const { from, fullAt } = scanFrom(unscanned);
      const scanning = scanDue(deps.sql, { limit: dueLimit, unhandledOnly, upcoming: lookAhead(unscanned), ...(from ? { from } : {}) });
      scanning.catch(() => undefined); // awaited below, or dropped with a failed refresh
      return { scanning, fullAt };
    };
    let early: ReturnType<typeof startScan> | undefined;
    try {
      // A refresh that applies no row and changes no snapshot lets the due scan go (on another
      // connection) as the refresh sends its COMMIT, not a round trip later: the scan reads
      // what it would read after that commit.
      const refresh = await deps.projection.refresh({ onUnchanged: () => (early = startScan()) });
      metrics.projectionStalled.set(refresh.stalled ? 1 : 0);
      // Recorded as soon as they are applied: the next sweep settles these missions even
      // when this pass fails further on (its next refresh will not report them again).
      changedSinceSweep ||= refresh.rowsApplied > 0;
      noteChanged(refresh.changed);
      unscanned ||= refresh.rowsApplied > 0;
      const { scanning, fullAt } = early ?? startScan();
      if (fullAt !== undefined) lastFullScan = fullAt;
      const scanned = await scanning;
      unscanned = false;
      const { at, due } = scanned;
      metrics.dueMissions.set(due.length);
      let complete = true;
      if (due.length > 0) {
        log.debug({ due: due.length }, 'missions due');
        try {
          const out = await deps.dispatch(due);
          if (out && out.deferred > 0) complete = false;
        } catch (err: unknown) {
          complete = false;
          log.error({ err }, 'dispatch failed');
        }
      }
      // Where the next scan may start: after the last mission of a full batch (the rest
      // of a backlog), or after this instant; from the start after anything went wrong.
      const last = due.at(-1);
      seenThrough = !unhandledOnly || !complete ? undefined : due.length >= dueLimit && last ? { ...last } : { nextRunAt: at };
      // A full batch leaves more due (the top of an hour): the next pass runs at once, not a
      // tick later, and the upkeep (deadlines, retries, settling) runs every BACKLOG_SWEEP_MS,
      // not on each of those passes.
      const backlog = due.length >= dueLimit && deps.sweep !== undefined;
      if (!backlog || performance.now() - lastSweep >= BACKLOG_SWEEP_MS) await sweep(scanned.upkeep, backlog);
      await prepare(scanned);
      const next = backlog ? new Date(at) : scanned.next;
      metrics.ticks.inc({ outcome: 'ok' });
      return {
        stats: {
          rowsApplied: refresh.rowsApplied,
          rowsSkipped: refresh.rowsSkipped,
          missionsDue: due.length,
          projectionRan: refresh.ran,
          projectionStalled: refresh.stalled,
          durationMs: Math.round((performance.now() - started) * 100) / 100,
        },
        nextDueAt: next,
      };
    } catch (err: unknown) {
      metrics.ticks.inc({ outcome: 'error' });
      throw err;
    } finally {
      endTimer();
    }
  };
}
