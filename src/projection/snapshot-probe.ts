/**
 * "Anything new?" before the window query: asks the transaction system
 * whether any transaction other than our own refreshes committed since the
 * snapshot of the last committed read. When none did, no row can be new
 * and a pass reads nothing.
 *
 * The rows visible now and not then are exactly those of transactions that
 * were running at the last read (its xip) or started after it (xid ≥ its
 * xmax) and have completed now; when each of them aborted or is ours, nothing
 * is new. Subtransaction ids make pg_visible_in_snapshot err only towards
 * "committed", i.e. a needless read. The last read lives in memory: a
 * restart, a failed pass or another instance's commit just means one read.
 */
import type { TxSql } from '../db/pool.js';

/** More transactions than this since the last read: skip the probe, just read. */
const PROBE_MAX_XIDS = 4096;

/** A pg_snapshot: transactions below xmax not listed in xip had completed. */
export interface Snapshot {
  text: string;
  xmax: bigint;
  xip: string[];
}

function parseSnapshot(text: string): Snapshot {
  const [, xmax = '0', xip = ''] = text.split(':');
  return { text, xmax: BigInt(xmax), xip: xip === '' ? [] : xip.split(',') };
}

export interface SnapshotProbe {
  /** The current snapshot, and whether anything not ours committed since the last read. */
  probe(tx: TxSql): Promise<{ snapshot: Snapshot; changed: boolean }>;
  /** A pass committed: every row `snapshot` shows is applied; `ownXids` are its transactions since. */
  committed(snapshot: Snapshot, ownXids: string[]): void;
  /** A pass failed: whatever it read is rolled back, so the next one reads again, in full. */
  forget(): void;
}

export function createSnapshotProbe(): SnapshotProbe {
  /** Snapshot taken before the last committed pass read; every row it shows has been applied. */
  let lastRead: Snapshot | undefined;
  /** Our own refresh transactions since then: they write snapshots and the cursor, never sync_changes. */
  let ownXids: string[] = [];

  async function probe(tx: TxSql): Promise<{ snapshot: Snapshot; changed: boolean }> {
    if (!lastRead) {
      const [row] = await tx<{ snap: string }[]>`SELECT pg_current_snapshot()::text AS snap`;
      return { snapshot: parseSnapshot(row!.snap), changed: true };
    }
    const [row] = await tx<{ snap: string; changed: boolean }[]>`
      WITH now AS (SELECT pg_current_snapshot() AS snap)
      SELECT now.snap::text AS snap,
        CASE WHEN pg_snapshot_xmax(now.snap)::text::bigint - ${lastRead.xmax.toString()}::bigint > ${PROBE_MAX_XIDS} THEN true
        ELSE EXISTS (
          SELECT 1 FROM (
            SELECT x FROM unnest(${lastRead.xip}::text[]::xid8[]) AS x
            UNION ALL
            SELECT g::text::xid8 FROM generate_series(${lastRead.xmax.toString()}::bigint, pg_snapshot_xmax(now.snap)::text::bigint - 1) AS g
          ) c
          WHERE c.x <> ALL(${ownXids}::text[]::xid8[])
            AND c.x IS DISTINCT FROM pg_current_xact_id_if_assigned() -- this pass (its FOR UPDATE)
            AND pg_visible_in_snapshot(c.x, now.snap)
            AND coalesce(pg_xact_status(c.x), 'committed') <> 'aborted')
        END AS changed
      FROM now`;
    return { snapshot: parseSnapshot(row!.snap), changed: row!.changed };
  }

  return {
    probe,
    committed(snapshot, xids) {
      lastRead = snapshot;
      ownXids = xids;
    },
    forget() {
      lastRead = undefined;
      ownXids = [];
    },
  };
}
