/**
 * One scheduler pass: refresh the projection, scan for due missions, hand
 * them to dispatch. A failing dispatch is logged and counted; it never
 * blocks the rest of the pass.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Projection } from '../projection/refresh.js';
import { findDueMissions, findUpcomingMissions, nextDueAt, type DueMission } from './due.js';
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
}

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
  /** The projection changed since the last sweep ran (a skipped sweep's change is not lost). */
  let changedSinceSweep = false;
  return async function runPass() {
    const started = performance.now();
    const endTimer = metrics.tickDuration.startTimer();
    try {
      const refresh = await deps.projection.refresh();
      metrics.projectionStalled.set(refresh.stalled ? 1 : 0);
      // One database instant for the scan and for the next wake-up, so nothing falls between them.
      const [clock] = await deps.sql<{ at: string }[]>`SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`;
      const at = clock!.at;
      const dueLimit = deps.dueLimit ?? 20_000;
      const due = await findDueMissions(deps.sql, { limit: dueLimit, unhandledOnly: deps.sweep !== undefined, at });
      metrics.dueMissions.set(due.length);
      if (due.length > 0) {
        log.debug({ due: due.length }, 'missions due');
        try {
          await deps.dispatch(due);
        } catch (err: unknown) {
          log.error({ err }, 'dispatch failed');
        }
      }
      changedSinceSweep ||= refresh.rowsApplied > 0;
      // While a full batch leaves more due (the top of an hour), passes follow each other at
      // once: the upkeep (deadlines, retries, settling) runs every BACKLOG_SWEEP_MS, not on each.
      const backlog = due.length >= dueLimit;
      if (deps.sweep && (!backlog || performance.now() - lastSweep >= BACKLOG_SWEEP_MS)) {
        lastSweep = performance.now();
        const projectionChanged = changedSinceSweep;
        changedSinceSweep = false;
        try {
          await deps.sweep({ projectionChanged });
        } catch (err: unknown) {
          log.error({ err }, 'occurrence sweep failed');
        }
      }
      if (deps.prepare && deps.prepareWithinMs) {
        // Look ahead only past what earlier passes covered, unless missions changed: each
        // pass rescanning thousands of readied missions kept Postgres busy at their instant.
        const atMs = Date.parse(at);
        const untilMs = atMs + deps.prepareWithinMs;
        const fromMs = refresh.rowsApplied > 0 || preparedThroughMs <= atMs ? atMs : preparedThroughMs;
        try {
          if (untilMs > fromMs) {
            const after = fromMs === atMs ? at : new Date(fromMs).toISOString();
            await deps.prepare(await findUpcomingMissions(deps.sql, { after, until: new Date(untilMs).toISOString(), limit: dueLimit }));
            preparedThroughMs = untilMs;
          }
        } catch (err: unknown) {
          log.error({ err }, 'preparing upcoming missions failed; they are dispatched when due');
        }
      }
      // A full batch leaves more due (the top of an hour): the next pass runs at once, not a tick later.
      const next = due.length >= dueLimit && deps.sweep !== undefined ? new Date(at) : await nextDueAt(deps.sql, at);
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
