/**
 * The incremental refresh: sync_changes → mana_ai.mission_snapshots.
 *
 * One pass runs in one transaction under an advisory lock (one refresher per
 * database; other instances skip). It reads only rows it has not applied
 * (created_at ≥ horizon and id not in the applied set), streams them in
 * batches, merges them into record states with lww.ts, rebuilds a record
 * from the log when a late delete asks for it, writes the states back and
 * moves the cursor. The cursor moves atomically; an incremental pass's
 * snapshot writes commit on their own, fenced to the pass (write-fence.ts),
 * so a crash mid-pass can leave snapshots ahead of the cursor, and the next
 * pass applies those rows again, which changes nothing (applying a row is
 * idempotent).
 *
 * Four things keep it cheap (BENCHMARKS.md has the figures):
 * - "Anything new?" first. sync_changes has no index that finds recent rows
 *   across users (each of its indexes leads with user_id or record_id), so
 *   the window query costs one index descent per user (PG 18 skip scan).
 *   Before it, a pass asks the transaction system whether any transaction
 *   other than our own refreshes committed since the snapshot of the last
 *   read (see `probeSnapshot`); when none did, no row can be new and nothing
 *   is read.
 * - A big backlog (cold start, long outage) is read in bulk, grouped by
 *   record with each record's rows in replay order: a record is complete
 *   when the next one starts, so it is written back in the next chunk and
 *   forgotten, its superseded values die young, and a delete never arrives
 *   after rows that follow it (no rebuilds). Rows older than their record's
 *   last delete come back without their data.
 * - An incremental pass does not load what it merges, mostly: Postgres
 *   merges each record whose new rows hold no delete field by field
 *   (snapshot-store.ts, mergeDeltas), in chunks on other pool connections,
 *   in parallel; only the rest is loaded, merged here and written back.
 * - Memory stays bounded whatever the log's size: only rows at or above the
 *   next horizon are remembered by id, a bulk pass holds about FLUSH_CHUNK
 *   records, and an incremental pass flushes and drops its record cache when
 *   its estimated size passes CACHE_BUDGET_BYTES.
 */
import type { Sql, TxSql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { instantOf, MIN_INSTANT } from './instant.js';
import { applyChange, emptyState, normalizeRow, replay, type Change, type ChangeRow, type RecordState } from './lww.js';
import {
  detectSyncColumns,
  recordRows,
  streamChanges,
  type ChangeWindow,
  type SupersededRow,
  type SyncColumns,
} from './change-source.js';
import { canSeeAllTransactions, readHorizon } from './horizon.js';
import { keyOf, loadStates, mergeDeltas, saveStates, snapshotsEmpty, type Delta } from './snapshot-store.js';
import { fencedWrite, waitForFencedWrites } from './write-fence.js';

const LOCK_KEY = 'mana_ai:projection';
const CURSOR_NAME = 'aiMissions';

/** A backlog reaching further back than this is read in bulk. */
const BULK_LAG_MS = 10 * 60_000;
/** Estimated heap an incremental pass's record cache may hold before it is flushed and dropped. */
const CACHE_BUDGET_BYTES = 12 * 1024 * 1024;
/** Heap bytes per byte of a state's serialized JSON (measured: about 1.7). */
const HEAP_PER_JSON_BYTE = 2.5;
/** Serialized bytes per record assumed until a flush has measured them. */
const INITIAL_RECORD_BYTES = 4096;
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
  /** Records per merge or load statement of an incremental pass (default LOAD_CHUNK); tests make it tiny. */
  loadChunk?: number;
  onMalformed?: (count: number) => void;
  onApplied?: (count: number) => void;
  /** Schema of sync_changes (SYNC_SCHEMA); default public. */
  syncSchema?: string;
}

interface Cursor {
  horizon: string;
  exists: boolean;
}

export interface Projection {
  refresh(): Promise<RefreshStats>;
  columns(): Promise<SyncColumns>;
}

/** Records' states written per statement by a flush; a bulk pass writes completed records in such chunks. */
const FLUSH_CHUNK = 1000;
/**
 * Records per statement of an incremental pass: per mergeDeltas, which are
 * sent at once (on other pool connections, so in parallel), and per load
 * of the records it leaves, which are loaded at once and each merged and
 * written back as soon as its load arrives.
 */
const LOAD_CHUNK = 250;
/** Write-backs sent and not yet answered, at most (each up to FLUSH_CHUNK records of JSON). */
const WRITES_AHEAD = 4;

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

/** The pool's connection limit (postgres.js keeps it in its options). */
function poolSize(sql: Sql): number {
  const max = (sql as unknown as { options?: { max?: unknown } }).options?.max;
  return typeof max === 'number' ? max : 1;
}

/** Session settings for a bulk read, local to its transaction. */
async function prepareBulkRead(tx: TxSql): Promise<void> {
  // JIT compiling the bulk query costs more than it saves.
  await tx`SET LOCAL jit = off`;
  // A cursor is planned for its first 10 % of rows by default: here the index on
  // (table_name, record_id, created_at), fetching the heap in random order (~60 % slower
  // than a seq scan and a sort). The whole result is read, so plan for all of it.
  await tx`SET LOCAL cursor_tuple_fraction = 1`;
}

export function createProjection(deps: ProjectionDeps): Projection {
  const { sql, log } = deps;
  const loadChunk = Math.max(1, deps.loadChunk ?? LOAD_CHUNK);
  let columnsCache: SyncColumns | undefined;
  let visibility: boolean | undefined;
  let warnedStall = false;
  const reportedMalformed = new Set<string>();
  /** Snapshot taken before the last committed pass read; every row it shows has been applied. */
  let lastRead: Snapshot | undefined;
  /** Our own refresh transactions since then: they write snapshots and the cursor, never sync_changes. */
  let ownXids: string[] = [];
  /** Serialized bytes per record, measured by flushes. */
  let recordBytes = INITIAL_RECORD_BYTES;

  async function columns(): Promise<SyncColumns> {
    columnsCache ??= await detectSyncColumns(sql, deps.syncSchema);
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

  /** Records an incremental pass's cache may hold: the configured cap, or fewer when records are big. */
  function cacheCap(): number {
    return Math.max(1, Math.min(deps.cacheRecords, Math.floor(CACHE_BUDGET_BYTES / (recordBytes * HEAP_PER_JSON_BYTE))));
  }

  async function refresh(): Promise<RefreshStats> {
    const started = performance.now();
    const cols = await columns();
    let snapshot: Snapshot | undefined;
    let ownXid: string | undefined;
    /** The pass's fenced write-backs, which committed before it: its own, too. */
    const writeXids: string[] = [];
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
        // A pass that reads rows first waits out any write-back still in flight from a pass
        // that died (see write-fence.ts), and learns its transaction id for its own.
        const passXid = read ? await waitForFencedWrites(tx) : undefined;
        // An incremental pass loads and writes snapshots on other connections of the pool,
        // several at once, each write committing on its own (fenced by this transaction), so
        // every load sees every write. A bulk pass's reader holds the second connection, and a
        // pool of two would leave a side query waiting behind it: there everything goes
        // through this transaction, in order.
        const elsewhere = read && !bulk && poolSize(sql) >= 2 ? passXid : undefined;
        const inFlight: { write: Promise<unknown>; keys: string[] }[] = [];
        const pendingKeys = new Set<string>();
        let wholeBytes = 0;
        let wholeRecords = 0;

        /**
         * Sends a write of these records' snapshots without waiting for it,
         * unless WRITES_AHEAD are already unanswered, and returns it (wrapped:
         * an async function would wait for it). A record
         * is in at most one write at a time: two on different connections
         * could land in either order.
         */
        async function sendWrite<T>(keys: string[], write: (db: TxSql) => Promise<T>): Promise<{ sent: Promise<T> }> {
          if (keys.some((k) => pendingKeys.has(k))) await writesDone();
          const sent = elsewhere === undefined
            ? write(tx)
            : fencedWrite(sql, elsewhere, write).then(({ result, xid }) => {
                if (xid) writeXids.push(xid);
                return result;
              });
          sent.catch(() => undefined); // awaited in settleOldestWrite; never an unhandled rejection
          for (const k of keys) pendingKeys.add(k);
          inFlight.push({ write: sent, keys });
          while (inFlight.length > WRITES_AHEAD) await settleOldestWrite();
          return { sent };
        }

        /** Writes states back (see sendWrite). */
        async function writeBack(states: RecordState[]): Promise<void> {
          if (states.length === 0) return;
          recordsWritten += states.length;
          nothingStored = false;
          const { sent } = await sendWrite(states.map((st) => keyOf(st.userId, st.recordId)), (db) => saveStates(db, states));
          sent.then((w) => {
            wholeBytes += w.bytes;
            wholeRecords += w.records;
          }, () => undefined);
        }

        async function settleOldestWrite(): Promise<void> {
          const { write, keys } = inFlight.shift()!;
          try {
            await write;
          } finally {
            for (const k of keys) pendingKeys.delete(k);
          }
        }

        /** Waits for every write-back sent; the first that failed fails the pass. */
        async function writesDone(): Promise<void> {
          while (inFlight.length > 0) await settleOldestWrite();
          if (wholeRecords > 0) recordBytes = Math.max(256, Math.round(wholeBytes / wholeRecords));
          wholeBytes = 0;
          wholeRecords = 0;
        }

        /**
         * Starts loading these records' stored states. A record is never
         * loaded while a write of it is in flight: records written back stay
         * cached until a flush, which waits for its writes, and mergeInDatabase
         * waits for its merges before it returns.
         */
        function startLoad(keys: string[], byKey: Map<string, Change[]>): Promise<Map<string, RecordState>> {
          const refs = keys.map((k) => byKey.get(k)![0]!);
          const load = loadStates(elsewhere === undefined ? tx : sql, refs);
          load.catch(() => undefined); // awaited in order by applyBatch
          return load;
        }

        /**
         * Writes the dirty states, except `keep`'s (a record a bulk pass may
         * still be reading), and drops them from the cache.
         */
        async function flush(keep?: string): Promise<void> {
          const keys = [...dirty].filter((k) => k !== keep);
          const keepDirty = keep !== undefined && dirty.has(keep);
          dirty.clear();
          if (keepDirty) dirty.add(keep);
          for (let i = 0; i < keys.length; i += FLUSH_CHUNK) {
            const states = keys.slice(i, i + FLUSH_CHUNK).map((k) => cache.get(k)).filter((st): st is RecordState => st !== undefined);
            for (const state of states) cache.delete(keyOf(state.userId, state.recordId));
            // The next chunk is gathered while Postgres writes this one.
            await writeBack(states);
          }
          await writesDone();
        }

        // keep(`${createdAt}|${id}`) without building the position for the (many) rows below the horizon.
        const keepFrom = (createdAt: string) => createdAt >= nextHorizon || createdAt.length > nextHorizon.length;
        function markApplied(createdAt: string, id: string): void {
          if (keepFrom(createdAt)) appliedNow.push(`${createdAt}|${id}`);
        }

        /**
         * Merges a batch into the snapshots. A bulk pass merges into the
         * cached states, loading the records not cached. An incremental pass
         * (writeEach) lets the database merge each record whose rows hold no
         * delete (mergeDeltas), in chunks sent at once without loading
         * anything; the rest it loads in chunks, merges here and writes back
         * chunk by chunk as their loads arrive. Those stay cached, so a later
         * batch merges into them.
         */
        async function applyBatch(rows: ChangeRow[], superseded: SupersededRow[], writeEach = false): Promise<void> {
          const changes: Change[] = [];
          for (const row of rows) {
            const n = normalizeRow(row);
            if (n.ok) {
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

          // Each record's changes in arrival order; records merge independently of each other.
          const byKey = new Map<string, Change[]>();
          for (const c of changes) {
            const k = keyOf(c.userId, c.recordId);
            const list = byKey.get(k);
            if (list) list.push(c);
            else byKey.set(k, [c]);
          }
          const cached: string[] = [];
          const missing: string[] = [];
          const blind: string[] = [];
          for (const [k, list] of byKey) {
            if (cache.has(k)) cached.push(k);
            else if (writeEach && !nothingStored && list.every((c) => c.kind === 'data')) blind.push(k);
            else missing.push(k);
          }
          missing.push(...(await mergeInDatabase(blind, byKey)));
          const chunks: { keys: string[]; load?: Promise<Map<string, RecordState>> }[] = [{ keys: cached }];
          const chunkSize = writeEach ? loadChunk : Math.max(1, missing.length);
          for (let i = 0; i < missing.length; i += chunkSize) {
            const keys = missing.slice(i, i + chunkSize);
            chunks.push(nothingStored ? { keys } : { keys, load: startLoad(keys, byKey) });
          }
          const emptyFor = (k: string) => emptyState(byKey.get(k)![0]!.userId, byKey.get(k)![0]!.recordId);
          for (const chunk of chunks) {
            const loaded = chunk.load ? await chunk.load : undefined;
            for (const k of chunk.keys) if (!cache.has(k)) cache.set(k, loaded?.get(k) ?? emptyFor(k));
            const ready: RecordState[] = [];
            for (const k of chunk.keys) {
              const state = cache.get(k)!;
              for (const c of byKey.get(k)!) {
                if (rebuild.has(k)) break;
                const outcome = applyChange(state, c);
                if (outcome === 'rebuild') rebuild.add(k);
                else if (outcome === 'applied') dirty.add(k);
              }
              // A record waiting for a rebuild is written after it.
              if (writeEach && dirty.has(k) && !rebuild.has(k)) {
                dirty.delete(k);
                ready.push(state);
              }
            }
            await writeBack(ready);
          }
        }

        /**
         * Sends these records' rows to the database to merge (mergeDeltas), in
         * chunks, and returns the keys of those it could not merge.
         */
        async function mergeInDatabase(keys: string[], byKey: Map<string, Change[]>): Promise<string[]> {
          const sent: { keys: string[]; write: Promise<{ merged: Set<string> }> }[] = [];
          for (let i = 0; i < keys.length; i += loadChunk) {
            const chunk = keys.slice(i, i + loadChunk);
            const deltas = chunk.map((k): Delta => {
              const changes = byKey.get(k)!;
              const state = replay(changes[0]!.userId, changes[0]!.recordId, changes);
              return { state, minPos: changes.reduce((min, c) => (c.pos < min ? c.pos : min), changes[0]!.pos) };
            });
            sent.push({ keys: chunk, write: (await sendWrite(chunk, (db) => mergeDeltas(db, deltas))).sent });
          }
          const left: string[] = [];
          for (const { keys: chunk, write } of sent) {
            const { merged } = await write;
            recordsWritten += merged.size;
            for (const k of chunk) if (!merged.has(k)) left.push(k);
          }
          return left;
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

        /** Rebuilds, writes back and forgets every cached record, except `keep`'s (see flush). */
        async function flushAndForget(keep?: string): Promise<void> {
          await runRebuilds();
          rebuilds += rebuild.size;
          rebuild.clear();
          await flush(keep);
          for (const k of cache.keys()) if (k !== keep) cache.delete(k);
        }

        const window: ChangeWindow = { horizon: cursor.horizon, appliedIds: cursorApplied.map((p) => p.slice(p.indexOf('|') + 1)) };
        const batchRows = Math.max(1, Math.min(deps.batchRows, FETCH_ROWS));
        if (!read) {
          // Nothing committed since the last read: no row can be new.
        } else if (!bulk) {
          await streamChanges(tx, cols, window, { batchRows }, async (rows, superseded) => {
            await applyBatch(rows, superseded, true);
            // Bound memory whatever the log's size: write back and forget.
            if (cache.size > cacheCap()) await flushAndForget();
          });
        } else {
          nothingStored = await snapshotsEmpty(tx);
          const onBulkBatch = async (rows: ChangeRow[], superseded: SupersededRow[]) => {
            await applyBatch(rows, superseded);
            if (cache.size <= Math.min(FLUSH_CHUNK, deps.cacheRecords)) return;
            // Records arrive one after another: all but the last row's are complete.
            const last = rows.at(-1);
            await flushAndForget(last === undefined ? undefined : keyOf(last.userId, last.recordId));
          };
          // The rows are read on a second connection, so this transaction's loads and writes
          // never queue behind the FETCHes in flight (and Postgres keeps sorting and sending
          // while it writes). Its snapshot is taken after the horizon was read: whatever
          // commits after it is at or above the horizon and read by the next pass, as always.
          const separate = poolSize(sql) >= 2;
          log.info({ since: cursor.horizon, separate }, 'projection: reading a backlog in bulk');
          const readBacklog = async (rtx: TxSql) => {
            await prepareBulkRead(rtx);
            await streamChanges(rtx, cols, window, { batchRows, bulk: true }, onBulkBatch);
          };
          if (separate) await sql.begin(readBacklog);
          else await readBacklog(tx);
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
    ownXids = ownXid ? [ownXid, ...writeXids] : writeXids;
    if (result.rowsSkipped) deps.onMalformed?.(result.rowsSkipped);
    if (result.rowsApplied) deps.onApplied?.(result.rowsApplied);
    return { ran: true, ...result, durationMs };
  }

  return { refresh, columns };
}
