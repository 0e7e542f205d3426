/**
 * The incremental refresh: sync_changes → mana_ai.mission_snapshots.
 *
 * One pass runs in one transaction under an advisory lock (one refresher per
 * database; other instances skip). It reads only rows it has not applied
 * (created_at ≥ horizon and id not in the applied set), streams them in
 * batches, merges them into record states with lww.ts, rebuilds a record
 * from the log when a late delete asks for it, writes the states back and
 * moves the cursor, all atomically: a crash mid-pass leaves the previous
 * cursor and snapshots, and re-applying rows is idempotent anyway.
 *
 * Three things keep it cheap (BENCHMARKS.md has the figures):
 * - "Anything new?" first. sync_changes has no index that finds recent rows
 *   across users (each of its indexes leads with user_id or record_id), so
 *   the window query costs one index descent per user (PG 18 skip scan).
 *   Before it, a pass asks the transaction system whether any transaction
 *   other than our own refreshes committed since the snapshot of the last
 *   read (see `probeSnapshot`); when none did, no row can be new and nothing
 *   is read.
 * - A big backlog (cold start, long outage) is read in bulk: the record count
 *   decides how many hash partitions keep the record cache within its
 *   budget; per partition, deletes are read first, so a record's later rows
 *   never precede its delete (no rebuilds), and rows older than their
 *   record's last delete come back without their data.
 * - Memory stays bounded whatever the log's size: only rows at or above the
 *   next horizon are remembered by id, and the record cache is flushed and
 *   dropped when its estimated size passes CACHE_BUDGET_BYTES. In a bulk
 *   pass a field's value is held as a reference to its row (RowRef) and
 *   fetched when the record is written: values a later row supersedes then
 *   die young instead of filling V8's old generation.
 */
import type { Sql, TxSql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { instantOf, MIN_INSTANT } from './instant.js';
import { applyChange, emptyState, normalizeRow, replay, type Change, type ChangeRow, type RecordState } from './lww.js';
import {
  detectSyncColumns,
  estimateRecords,
  recordRows,
  rowData,
  streamChanges,
  type ChangeWindow,
  type SupersededRow,
  type SyncColumns,
} from './change-source.js';
import { canSeeAllTransactions, readHorizon } from './horizon.js';
import { keyOf, loadStates, saveStates, snapshotsEmpty } from './snapshot-store.js';

const LOCK_KEY = 'mana_ai:projection';
const CURSOR_NAME = 'aiMissions';

/** A backlog reaching further back than this is read in bulk. */
const BULK_LAG_MS = 10 * 60_000;
/**
 * Estimated heap the record cache may hold before it is flushed and dropped.
 * Small on purpose: between collections V8 lets the old generation grow to
 * about four times what survived the last one, and a catch-up promotes a lot
 * (each record's current field versions live until its next row, a whole
 * turn of the log later). At 1M rows (10,000 records) the catch-up peaked
 * at 200–210 MiB RSS with 12 MiB (four partitions), at 210–265 MiB with
 * 16 MiB (three) and at ~315 MiB with all records at once; each partition
 * costs Postgres two more scans of the table (about 1.2 s of CPU here).
 */
const CACHE_BUDGET_BYTES = 12 * 1024 * 1024;
/** Heap bytes per byte of a state's serialized JSON (measured: about 1.7). */
const HEAP_PER_JSON_BYTE = 2.5;
/** Serialized bytes per record assumed until a flush has measured them. */
const INITIAL_RECORD_BYTES = 4096;
/** Heap per field of a record whose values are RowRefs (stamp string, version, map entry), and per record. */
const REF_FIELD_BYTES = 200;
const REF_RECORD_BYTES = 400;
/** Fields per record assumed until a flush has counted them. */
const INITIAL_FIELDS_PER_RECORD = 16;
/**
 * Rows per FETCH, at most: a bigger batch lives long enough to be promoted
 * out of V8's young generation and costs more in GC than the round trips it
 * saves (measured: 5,000 → 1,000 took the catch-up's client CPU down by a third).
 */
const FETCH_ROWS = 1000;
/** More transactions than this since the last read: skip the probe, just read. */
const PROBE_MAX_XIDS = 4096;

export interface RefreshStats {
  /** False when another instance held the refresh lock. */
  ran: boolean;
  rowsApplied: number;
  rowsSkipped: number;
  recordsWritten: number;
  rebuilds: number;
  horizon: string;
  /** True when the horizon could not advance because open transactions are invisible to this role. */
  stalled: boolean;
  durationMs: number;
}

export interface ProjectionDeps {
  sql: Sql;
  log: Logger;
  batchRows: number;
  cacheRecords: number;
  onMalformed?: (count: number) => void;
  onApplied?: (count: number) => void;
}

interface Cursor {
  horizon: string;
  exists: boolean;
}

export interface Projection {
  refresh(): Promise<RefreshStats>;
  columns(): Promise<SyncColumns>;
}

/** Rows' states written per statement by a flush (also how many RowRefs resolve at once). */
const FLUSH_CHUNK = 1000;

/** A bulk pass's stand-in for a field value: the row it comes from; resolved by the flush. */
class RowRef {
  constructor(readonly rowId: string) {}
}

/** A pg_snapshot: transactions below xmax not listed in xip had completed. */
interface Snapshot {
  text: string;
  xmax: bigint;
  xip: string[];
}

function parseSnapshot(text: string): Snapshot {
  const [, xmax = '0', xip = ''] = text.split(':');
  return { text, xmax: BigInt(xmax), xip: xip === '' ? [] : xip.split(',') };
}

export function createProjection(deps: ProjectionDeps): Projection {
  const { sql, log } = deps;
  let columnsCache: SyncColumns | undefined;
  let visibility: boolean | undefined;
  let warnedStall = false;
  const reportedMalformed = new Set<string>();
  /** Snapshot taken before the last committed pass read; every row it shows has been applied. */
  let lastRead: Snapshot | undefined;
  /** Our own refresh transactions since then: they write snapshots and the cursor, never sync_changes. */
  let ownXids: string[] = [];
  /** Serialized bytes and fields per record, measured by flushes. */
  let recordBytes = INITIAL_RECORD_BYTES;
  let fieldsPerRecord = INITIAL_FIELDS_PER_RECORD;

  async function columns(): Promise<SyncColumns> {
    columnsCache ??= await detectSyncColumns(sql);
    return columnsCache;
  }

  async function readCursor(tx: TxSql): Promise<Cursor> {
    const [row] = await tx<{ horizon: string }[]>`
      SELECT horizon FROM mana_ai.projection_cursor WHERE name = ${CURSOR_NAME} FOR UPDATE`;
    return row ? { horizon: row.horizon, exists: true } : { horizon: MIN_INSTANT, exists: false };
  }

  /** The applied set ("created_at|id" of rows at or above the horizon): read only by a pass that reads rows. */
  async function readApplied(tx: TxSql): Promise<string[]> {
    const [row] = await tx<{ applied: string[] }[]>`SELECT applied FROM mana_ai.projection_cursor WHERE name = ${CURSOR_NAME}`;
    return row?.applied ?? [];
  }

  /**
   * The current snapshot, and whether a transaction other than our own
   * refreshes committed since `lastRead`. The rows visible now and not then
   * are exactly those of transactions that were running at lastRead (its
   * xip) or started after it (xid ≥ its xmax) and have completed now; when
   * each of them aborted or is ours, nothing is new. Subtransaction ids make
   * pg_visible_in_snapshot err only towards "committed", i.e. a needless read.
   */
  async function probeSnapshot(tx: TxSql): Promise<{ snapshot: Snapshot; changed: boolean }> {
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

  function reportMalformed(row: ChangeRow, reason: string): void {
    // Each bad row is logged once per process, not on every rebuild that meets it again.
    if (reportedMalformed.has(row.id)) return;
    if (reportedMalformed.size > 100_000) reportedMalformed.clear();
    reportedMalformed.add(row.id);
    log.warn({ rowId: row.id, userId: row.userId, recordId: row.recordId, reason }, 'skipping malformed sync_changes row');
  }

  /** Records the cache may hold: the configured cap, or fewer when records are big. */
  function cacheCap(refs: boolean): number {
    const perRecord = refs ? fieldsPerRecord * REF_FIELD_BYTES + REF_RECORD_BYTES : recordBytes * HEAP_PER_JSON_BYTE;
    return Math.max(1, Math.min(deps.cacheRecords, Math.floor(CACHE_BUDGET_BYTES / perRecord)));
  }

  async function refresh(): Promise<RefreshStats> {
    const started = performance.now();
    const cols = await columns();
    let snapshot: Snapshot | undefined;
    let ownXid: string | undefined;
    let result;
    try {
      result = await sql.begin(async (tx) => {
        const [lock] = await tx<{ ok: boolean }[]>`SELECT pg_try_advisory_xact_lock(hashtext(${LOCK_KEY})) AS ok`;
        if (!lock?.ok) return null;
        visibility ??= await canSeeAllTransactions(tx);
        const cursor = await readCursor(tx);
        // Read the horizon before the rows (see horizon.ts for why the order matters),
        // and the snapshot too: whatever commits after it is read by a later pass.
        const reading = await readHorizon(tx, visibility);
        const probe = await probeSnapshot(tx);
        snapshot = probe.snapshot;
        const stalled = reading.horizon === null;
        if (stalled && !warnedStall) {
          warnedStall = true;
          log.warn('projection horizon stalled: this role cannot see other transactions; grant pg_read_all_stats so it can advance');
        }
        const read = probe.changed;
        // Thousands of positions when rows arrive fast: moved only by passes that read rows.
        const cursorApplied = read ? await readApplied(tx) : [];
        const bulk = read && !stalled && cursor.horizon < instantOf(new Date(Date.now() - BULK_LAG_MS));
        const nextHorizon = reading.horizon !== null && reading.horizon > cursor.horizon ? reading.horizon : cursor.horizon;
        // Positions compare as text only while created_at has four year digits; a row
        // stamped beyond 9999 is in the future, so it stays tracked (never re-read).
        const keep = (p: string) => p >= nextHorizon || p.indexOf('|') > nextHorizon.length;

        const cache = new Map<string, RecordState>();
        const dirty = new Set<string>();
        const rebuild = new Set<string>();
        const appliedNow: string[] = [];
        let rowsApplied = 0;
        let rowsSkipped = 0;
        let recordsWritten = 0;
        let rebuilds = 0;
        // Loads are skipped while the snapshots table is known empty and nothing was written yet.
        let nothingStored = false;
        // Field values held as RowRefs (bulk passes).
        let useRefs = false;

        /** Replaces RowRefs by the values they stand for; a record whose row is gone is replayed from the log. */
        async function resolveRefs(states: RecordState[]): Promise<RecordState[]> {
          const uses = new Map<string, [state: number, key: string][]>();
          states.forEach((state, i) => {
            for (const [key, v] of state.fields) {
              if (!(v.value instanceof RowRef)) continue;
              const list = uses.get(v.value.rowId);
              if (list) list.push([i, key]);
              else uses.set(v.value.rowId, [[i, key]]);
            }
          });
          if (uses.size === 0) return states;
          const data = await rowData(tx, [...uses.keys()]);
          const lost = new Set<number>();
          for (const [rowId, list] of uses) {
            const d = data.get(rowId);
            for (const [i, key] of list) {
              if (typeof d === 'object' && d !== null && Object.hasOwn(d, key)) states[i]!.fields.get(key)!.value = (d as Record<string, unknown>)[key];
              else lost.add(i); // removed from the log since it was read
            }
          }
          for (const i of lost) {
            const state = states[i]!;
            states[i] = await replayFromLog(state.userId, state.recordId);
            cache.set(keyOf(state.userId, state.recordId), states[i]!);
          }
          return states;
        }

        /** Writes the dirty states and drops them from the cache (a flush always ends a partition, a pass or the cache). */
        async function flush(): Promise<void> {
          const keys = [...dirty];
          dirty.clear();
          let fields = 0;
          let bytes = 0;
          let whole = 0;
          let pending: Promise<{ bytes: number; records: number }> | undefined;
          const settle = async () => {
            if (!pending) return;
            const w = await pending;
            bytes += w.bytes;
            whole += w.records;
          };
          for (let i = 0; i < keys.length; i += FLUSH_CHUNK) {
            const states = await resolveRefs(keys.slice(i, i + FLUSH_CHUNK).map((k) => cache.get(k)).filter((s): s is RecordState => s !== undefined));
            for (const state of states) {
              fields += state.fields.size;
              cache.delete(keyOf(state.userId, state.recordId));
            }
            // One write in flight: this chunk was resolved while Postgres wrote the previous one.
            await settle();
            pending = saveStates(tx, states);
            pending.catch(() => undefined);
            recordsWritten += states.length;
          }
          await settle();
          if (whole > 0) recordBytes = Math.max(256, Math.round(bytes / whole));
          if (keys.length > 0) {
            fieldsPerRecord = Math.max(1, fields / keys.length);
            nothingStored = false;
          }
        }

        // keep(`${createdAt}|${id}`) without building the position for the (many) rows below the horizon.
        const keepFrom = (createdAt: string) => createdAt >= nextHorizon || createdAt.length > nextHorizon.length;
        function markApplied(createdAt: string, id: string): void {
          if (keepFrom(createdAt)) appliedNow.push(`${createdAt}|${id}`);
        }

        async function applyBatch(rows: ChangeRow[], superseded: SupersededRow[]): Promise<void> {
          const changes: Change[] = [];
          for (const row of rows) {
            const n = normalizeRow(row);
            if (n.ok) {
              if (useRefs && n.change.kind === 'data') {
                const ref = new RowRef(row.id);
                for (const field of n.change.fields) field[1] = ref;
              }
              changes.push(n.change);
            } else {
              rowsSkipped++;
              reportMalformed(row, n.reason);
            }
            markApplied(row.createdAt, row.id);
          }
          // Older than a delete of their record applied in this pass: applying them would change nothing.
          for (const s of superseded) markApplied(s.createdAt, s.id);
          rowsApplied += changes.length + superseded.length;

          const keys = changes.map((c) => keyOf(c.userId, c.recordId));
          const missing = new Map<string, { userId: string; recordId: string }>();
          changes.forEach((c, i) => {
            if (!cache.has(keys[i]!)) missing.set(keys[i]!, { userId: c.userId, recordId: c.recordId });
          });
          if (missing.size > 0) {
            const loaded = nothingStored ? undefined : await loadStates(tx, [...missing.values()]);
            for (const [k, ref] of missing) cache.set(k, loaded?.get(k) ?? emptyState(ref.userId, ref.recordId));
          }
          changes.forEach((c, i) => {
            const k = keys[i]!;
            if (rebuild.has(k)) return;
            const outcome = applyChange(cache.get(k)!, c);
            if (outcome === 'rebuild') rebuild.add(k);
            else if (outcome === 'applied') dirty.add(k);
          });
          // Bound memory whatever the log's size: write back and forget.
          if (cache.size > cacheCap(useRefs)) await flushAndForget();
        }

        async function replayFromLog(userId: string, recordId: string): Promise<RecordState> {
          const changes: Change[] = [];
          for (const row of await recordRows(tx, cols, userId, recordId)) {
            const n = normalizeRow(row);
            if (n.ok) changes.push(n.change);
            else reportMalformed(row, n.reason);
          }
          return replay(userId, recordId, changes);
        }

        async function runRebuilds(): Promise<void> {
          for (const k of rebuild) {
            const state = cache.get(k)!;
            cache.set(k, await replayFromLog(state.userId, state.recordId));
            dirty.add(k);
          }
        }

        async function flushAndForget(): Promise<void> {
          await runRebuilds();
          rebuilds += rebuild.size;
          rebuild.clear();
          await flush();
          cache.clear();
        }

        const window: ChangeWindow = { horizon: cursor.horizon, appliedIds: cursorApplied.map((p) => p.slice(p.indexOf('|') + 1)) };
        const batchRows = Math.max(1, Math.min(deps.batchRows, FETCH_ROWS));
        const onBatch = async (rows: ChangeRow[], superseded: SupersededRow[]) => {
          await applyBatch(rows, superseded);
        };

        if (!read) {
          // Nothing committed since the last read: no row can be new.
        } else if (!bulk) {
          await streamChanges(tx, cols, window, { batchRows }, onBatch);
        } else {
          // JIT compiling the bulk queries costs more than it saves.
          await tx`SET LOCAL jit = off`;
          useRefs = true;
          const emptyAtStart = await snapshotsEmpty(tx);
          const records = await estimateRecords(tx, cursor.horizon);
          // Hash partitions are not perfectly even: leave a fifth of the cache as slack.
          const count = Math.max(1, Math.ceil(records / (0.8 * cacheCap(true))));
          log.info({ records, partitions: count, since: cursor.horizon }, 'projection: reading a backlog in bulk');
          for (let index = 0; index < count; index++) {
            // Partitions hold disjoint records: one never stores what the next would load.
            nothingStored = emptyAtStart;
            await streamChanges(tx, cols, window, { batchRows, bulk: true, partition: { count, index } }, onBatch);
            if (count > 1) await flushAndForget();
          }
        }
        await runRebuilds();
        rebuilds += rebuild.size;
        await flush();

        let written: { xid: string } | undefined;
        if (!read && cursor.exists) {
          // The same pruning as keep(), in place (text compared as bytes, as JavaScript does);
          // when nothing falls below the horizon the list is assigned as stored, which keeps
          // its TOAST pointer instead of rewriting it.
          const kept = tx`p COLLATE "C" >= ${nextHorizon} OR strpos(p, '|') - 1 > length(${nextHorizon})`;
          [written] = await tx<{ xid: string }[]>`
            UPDATE mana_ai.projection_cursor SET horizon = ${nextHorizon},
              applied = CASE WHEN EXISTS (SELECT 1 FROM unnest(applied) AS p WHERE NOT (${kept}))
                        THEN ARRAY(SELECT p FROM unnest(applied) AS p WHERE ${kept}) ELSE applied END,
              updated_at = now()
            WHERE name = ${CURSOR_NAME}
            RETURNING pg_current_xact_id()::text AS xid`;
        } else {
          const applied = [...cursorApplied.filter(keep), ...appliedNow];
          [written] = await tx<{ xid: string }[]>`
            INSERT INTO mana_ai.projection_cursor (name, horizon, applied, updated_at)
            VALUES (${CURSOR_NAME}, ${nextHorizon}, ${applied}::text[], now())
            ON CONFLICT (name) DO UPDATE SET horizon = excluded.horizon, applied = excluded.applied, updated_at = now()
            RETURNING pg_current_xact_id()::text AS xid`;
        }
        ownXid = written?.xid;
        return { rowsApplied, rowsSkipped, recordsWritten, rebuilds, horizon: nextHorizon, stalled };
      });
    } catch (err: unknown) {
      // Whatever this pass read is rolled back: the next one reads again, in full.
      lastRead = undefined;
      ownXids = [];
      throw err;
    }
    const durationMs = performance.now() - started;
    if (!result) {
      return { ran: false, rowsApplied: 0, rowsSkipped: 0, recordsWritten: 0, rebuilds: 0, horizon: '', stalled: false, durationMs };
    }
    // Committed: every row the snapshot shows is applied. Only our transactions since it are excused.
    lastRead = snapshot;
    ownXids = ownXid ? [ownXid] : [];
    if (result.rowsSkipped) deps.onMalformed?.(result.rowsSkipped);
    if (result.rowsApplied) deps.onApplied?.(result.rowsApplied);
    return { ran: true, ...result, durationMs };
  }

  return { refresh, columns };
}
