/**
 * What a pass counts while it reads: rows applied and skipped, records
 * written, rebuilds, and the positions of the rows it applied that the
 * cursor must remember (those the pruning rule keeps, see cursor.ts).
 */
import type { Logger } from '../log.js';
import { mayChangeAgent } from './agent-status.js';
import type { SupersededRow } from './change-source.js';
import { decodeRow, type Change, type ChangeRow } from './wire.js';

export interface PassTally {
  rowsApplied: number;
  rowsSkipped: number;
  recordsWritten: number;
  rebuilds: number;
  /** Positions ("created_at|id") of rows applied by this pass at or above the next horizon. */
  appliedNow: string[];
  /**
   * The views (views.ts viewKey) this pass's rows changed, so that settling
   * looks at their occurrences only; null once more than
   * TOUCHED_CAP (a catch-up): then every open occurrence is looked at.
   */
  touched: Set<string> | null;
  /**
   * The mission views among them whose rows may have changed which agent the
   * mission belongs to (agent-status.ts mayChangeAgent): the only missions
   * whose agent status a pass works out again, besides those of users whose
   * agent records it changed. Meaningless once `touched` is null.
   */
  agentMayChange: Set<string>;
}

/** Beyond this many views changed in one pass, settling reads every open occurrence instead. */
export const TOUCHED_CAP = 20_000;

export function emptyTally(): PassTally {
  return { rowsApplied: 0, rowsSkipped: 0, recordsWritten: 0, rebuilds: 0, appliedNow: [], touched: new Set(), agentMayChange: new Set() };
}

/** Logs each malformed row once per process, not on every rebuild that meets it again. */
export function createMalformedReporter(log: Logger): (row: ChangeRow, reason: string) => void {
  const reported = new Set<string>();
  return function reportMalformed(row, reason) {
    if (reported.has(row.id)) return;
    if (reported.size > 100_000) reported.clear();
    reported.add(row.id);
    log.warn({ rowId: row.id, table: row.tableName, userId: row.userId, recordId: row.recordId, reason }, 'skipping malformed sync_changes row');
  };
}

export interface BatchReader {
  tally: PassTally;
  /**
   * Counts a fetched batch, remembers the positions the cursor keeps, and
   * decodes its rows: `changes[i]` is rows[i] decoded, null when it is
   * malformed (counted, logged) or does nothing.
   */
  take(rows: ChangeRow[], superseded: SupersededRow[]): (Change | null)[];
  /** Notes the views a batch changed, with the changes routed to each. */
  touch(views: ReadonlyMap<string, readonly Change[]>): void;
}

export function createBatchReader(opts: {
  /** The pruning rule for the pass's next horizon (cursor.ts keepsRow). */
  keeps: (createdAt: string) => boolean;
  reportMalformed: (row: ChangeRow, reason: string) => void;
}): BatchReader {
  const tally = emptyTally();
  // Built only for rows the cursor keeps (most rows of a bulk read are below the horizon).
  const markApplied = (createdAt: string, id: string) => {
    if (opts.keeps(createdAt)) tally.appliedNow.push(`${createdAt}|${id}`);
  };
  return {
    tally,
    take(rows, superseded) {
      const changes: (Change | null)[] = [];
      for (const row of rows) {
        const d = decodeRow(row);
        if (d.ok) {
          changes.push(d.change);
          tally.rowsApplied++;
        } else {
          changes.push(null);
          tally.rowsSkipped++;
          opts.reportMalformed(row, d.reason);
        }
        markApplied(row.createdAt, row.id);
      }
      // Superseded by a later hard delete read in this pass: applying them would change nothing.
      for (const s of superseded) markApplied(s.createdAt, s.id);
      tally.rowsApplied += superseded.length;
      return changes;
    },
    touch(views) {
      if (!tally.touched) return;
      for (const [k, changes] of views) {
        tally.touched.add(k);
        if (mayChangeAgent(changes)) tally.agentMayChange.add(k);
      }
      if (tally.touched.size > TOUCHED_CAP) tally.touched = null;
    },
  };
}
