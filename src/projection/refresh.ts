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
 */
import type { Sql, TxSql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { MIN_INSTANT } from './instant.js';
import { applyChange, emptyState, normalizeRow, replay, type Change, type ChangeRow, type RecordState } from './lww.js';
import { changeColumns, detectSyncColumns, MISSIONS, recordRows, type SyncColumns } from './change-source.js';
import { canSeeAllTransactions, readHorizon } from './horizon.js';
import { keyOf, loadStates, saveStates } from './snapshot-store.js';

const LOCK_KEY = 'mana_ai:projection';
const CURSOR_NAME = 'aiMissions';

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
  applied: string[];
}

export interface Projection {
  refresh(): Promise<RefreshStats>;
  columns(): Promise<SyncColumns>;
}

export function createProjection(deps: ProjectionDeps): Projection {
  const { sql, log } = deps;
  let columnsCache: SyncColumns | undefined;
  let visibility: boolean | undefined;
  let warnedStall = false;
  const reportedMalformed = new Set<string>();

  async function columns(): Promise<SyncColumns> {
    columnsCache ??= await detectSyncColumns(sql);
    return columnsCache;
  }

  async function readCursor(tx: TxSql): Promise<Cursor> {
    const [row] = await tx<{ horizon: string; applied: string[] }[]>`
      SELECT horizon, applied FROM mana_ai.projection_cursor WHERE name = ${CURSOR_NAME} FOR UPDATE`;
    return row ?? { horizon: MIN_INSTANT, applied: [] };
  }

  function reportMalformed(row: ChangeRow, reason: string): void {
    // Each bad row is logged once per process, not on every rebuild that meets it again.
    if (reportedMalformed.has(row.id)) return;
    if (reportedMalformed.size > 100_000) reportedMalformed.clear();
    reportedMalformed.add(row.id);
    log.warn({ rowId: row.id, userId: row.userId, recordId: row.recordId, reason }, 'skipping malformed sync_changes row');
  }

  async function refresh(): Promise<RefreshStats> {
    const started = performance.now();
    const cols = await columns();
    const result = await sql.begin(async (tx) => {
      const [lock] = await tx<{ ok: boolean }[]>`SELECT pg_try_advisory_xact_lock(hashtext(${LOCK_KEY})) AS ok`;
      if (!lock?.ok) return null;
      visibility ??= await canSeeAllTransactions(tx);
      const cursor = await readCursor(tx);
      // Read the horizon before the rows (see horizon.ts for why the order matters).
      const reading = await readHorizon(tx, visibility);
      const stalled = reading.horizon === null;
      if (stalled && !warnedStall) {
        warnedStall = true;
        log.warn('projection horizon stalled: this role cannot see other transactions; grant pg_read_all_stats so it can advance');
      }
      const nextHorizon = reading.horizon !== null && reading.horizon > cursor.horizon ? reading.horizon : cursor.horizon;

      const cache = new Map<string, RecordState>();
      const dirty = new Set<string>();
      const rebuild = new Set<string>();
      const appliedNow: string[] = [];
      let rowsApplied = 0;
      let rowsSkipped = 0;
      let recordsWritten = 0;

      async function flush(): Promise<void> {
        const states = [...dirty].map((k) => cache.get(k)).filter((s): s is RecordState => s !== undefined);
        await saveStates(tx, states);
        recordsWritten += states.length;
        dirty.clear();
      }

      async function applyBatch(rows: ChangeRow[]): Promise<void> {
        const changes: Change[] = [];
        for (const row of rows) {
          const n = normalizeRow(row);
          if (n.ok) changes.push(n.change);
          else {
            rowsSkipped++;
            reportMalformed(row, n.reason);
          }
          appliedNow.push(`${row.createdAt}|${row.id}`);
        }
        const missing = new Map<string, { userId: string; recordId: string }>();
        for (const c of changes) {
          const k = keyOf(c.userId, c.recordId);
          if (!cache.has(k)) missing.set(k, { userId: c.userId, recordId: c.recordId });
        }
        const loaded = await loadStates(tx, [...missing.values()]);
        for (const [k, ref] of missing) cache.set(k, loaded.get(k) ?? emptyState(ref.userId, ref.recordId));
        for (const c of changes) {
          const k = keyOf(c.userId, c.recordId);
          if (rebuild.has(k)) continue;
          const outcome = applyChange(cache.get(k)!, c);
          if (outcome === 'rebuild') rebuild.add(k);
          else if (outcome === 'applied') dirty.add(k);
        }
        rowsApplied += changes.length;
        // Bound memory whatever the log's size: write back and forget.
        if (cache.size > deps.cacheRecords) {
          await flush();
          for (const k of cache.keys()) if (!rebuild.has(k)) cache.delete(k);
        }
      }

      const appliedIds = cursor.applied.map((p) => p.slice(p.indexOf('|') + 1));
      // A server-side cursor fetched with FETCH, not postgres.js' .cursor(): the
      // batch handler queries the same transaction's connection, and a query
      // issued while a postgres.js cursor is suspended waits behind it forever
      // (the refresh hung as soon as batchRows rows were pending).
      await tx`
        DECLARE refresh_rows NO SCROLL CURSOR FOR
        SELECT ${changeColumns(tx, cols)} FROM sync_changes
        WHERE app_id = ${MISSIONS.appId} AND table_name = ${MISSIONS.tableName}
          -- As text: postgres.js turns a string bound to timestamptz into a JS Date,
          -- dropping the horizon's microseconds, and rows just below it were re-read.
          AND created_at >= ${cursor.horizon}::text::timestamptz
          AND NOT (id = ANY(${appliedIds}::uuid[]))`;
      for (;;) {
        const batch = await tx<ChangeRow[]>`FETCH ${tx.unsafe(String(deps.batchRows))} FROM refresh_rows`;
        if (batch.length === 0) break;
        await applyBatch(batch);
      }
      await tx`CLOSE refresh_rows`;

      for (const k of rebuild) {
        const state = cache.get(k)!;
        const changes: Change[] = [];
        for (const row of await recordRows(tx, cols, state.userId, state.recordId)) {
          const n = normalizeRow(row);
          if (n.ok) changes.push(n.change);
          else reportMalformed(row, n.reason);
        }
        cache.set(k, replay(state.userId, state.recordId, changes));
        dirty.add(k);
      }
      await flush();

      // Positions compare as text only while created_at has four year digits; a row
      // stamped beyond 9999 is in the future, so it stays tracked (never re-read).
      const applied = [...cursor.applied, ...appliedNow].filter((p) => p >= nextHorizon || p.indexOf('|') > nextHorizon.length);
      await tx`
        INSERT INTO mana_ai.projection_cursor (name, horizon, applied, updated_at)
        VALUES (${CURSOR_NAME}, ${nextHorizon}, ${applied}::text[], now())
        ON CONFLICT (name) DO UPDATE SET horizon = excluded.horizon, applied = excluded.applied, updated_at = now()`;
      return { rowsApplied, rowsSkipped, recordsWritten, rebuilds: rebuild.size, horizon: nextHorizon, stalled };
    });
    const durationMs = performance.now() - started;
    if (!result) {
      return { ran: false, rowsApplied: 0, rowsSkipped: 0, recordsWritten: 0, rebuilds: 0, horizon: '', stalled: false, durationMs };
    }
    if (result.rowsSkipped) deps.onMalformed?.(result.rowsSkipped);
    if (result.rowsApplied) deps.onApplied?.(result.rowsApplied);
    return { ran: true, ...result, durationMs };
  }

  return { refresh, columns };
}
