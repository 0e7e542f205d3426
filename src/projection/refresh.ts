/**
 * The refresh: sync_changes → mana_ai.mission_snapshots and
 * mana_ai.agent_snapshots (tables.ts), one view per user of each record
 * (views.ts), each as the webapp makes it of its rows (lww.ts).
 *
 * One pass runs in one transaction under an advisory lock (one refresher per
 * database; other instances skip):
 * - cursor.ts: the horizon below which every row is applied, and the applied
 *   set of rows at or above it, with the rule that prunes it;
 * - horizon.ts: where the next horizon may go (never past an open writer);
 * - snapshot-probe.ts: "anything new?" — when nothing but our own refreshes
 *   committed since the last read, no row can be new and nothing is read;
 * - incremental.ts or bulk.ts: read the window (rows at or above the horizon
 *   not applied yet), route each row to its views (record-spaces.ts) and
 *   merge it into their states (record-cache.ts, lww.ts);
 *   a backlog reaching further back than BULK_LAG_MS is read in bulk;
 * - write-pipeline.ts: the states go back to the snapshots while the pass
 *   merges on; an incremental pass's writes commit on their own, fenced to
 *   the pass (write-fence.ts);
 * - statistics.ts: once a bulk pass has committed, the tables it wrote are
 *   analyzed, so the next passes' merges are planned for their real size.
 * The cursor moves atomically with the pass, so a crash mid-pass can leave
 * snapshots ahead of the cursor, and the next pass applies those rows again,
 * which changes nothing (applying a row is idempotent). Memory stays bounded
 * whatever the log's size: only rows at or above the next horizon are
 * remembered by id, a bulk pass holds about FLUSH_CHUNK records, and an
 * incremental pass flushes and drops its record cache when its estimated
 * size passes CACHE_BUDGET_BYTES. BENCHMARKS.md has the figures.
 */
import type { Sql, TxSql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { instantOf } from './instant.js';
import { detectSyncColumns, type SyncColumns } from './change-source.js';
import { canSeeAllTransactions, readHorizon } from './horizon.js';
import { keepsPosition, keepsRow, lockCursor, readApplied, writeCursor, type Cursor } from './cursor.js';
import { createSnapshotProbe, type Snapshot } from './snapshot-probe.js';
import { createBatchReader, createMalformedReporter, emptyTally, TOUCHED_CAP, type PassTally } from './pass-tally.js';
import { keyOf } from './snapshot-store.js';
import { createRecordCache } from './record-cache.js';
import { createWritePipeline, poolSize } from './write-pipeline.js';
import { readIncrementally } from './incremental.js';
import { readInBulk } from './bulk.js';
import { waitForFencedWrites } from './write-fence.js';
import { MISSIONS, AGENTS } from './tables.js';
import { splitViewKey } from './views.js';
import { updateAgentStatuses, type AgentStatusScope, type MissionHeldByAgent } from './agent-status.js';
import { analyzeAfterBulk } from './statistics.js';

const LOCK_KEY = 'mana_ai:projection';
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
/**
 * Records per statement of an incremental pass: per mergeDeltas, which are
 * sent at once (on other pool connections, so in parallel), and per load
 * of the records it leaves, which are loaded at once and each merged and
 * written back as soon as its load arrives.
 */
const LOAD_CHUNK = 250;

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
  /**
   * The missions' views the applied rows changed (user, mission), and those
   * whose agent turned inactive (agent-status.ts); null: too many to list (a catch-up).
   */
  changed: { userId: string; missionId: string }[] | null;
  /** The agents' views the applied rows changed (user, agent); null: too many to list. */
  changedAgents: { userId: string; agentId: string }[] | null;
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

export interface RefreshOptions {
  /**
   * Called, before the pass commits, when it applied no row and what it
   * still has to commit changes no snapshot (no agent status to work out;
   * or another instance holds the refresh lock): a reader of the snapshots
   * need not wait for the commit. Not called otherwise.
   */
  onUnchanged?: () => void;
}

export interface Projection {
  refresh(opts?: RefreshOptions): Promise<RefreshStats>;
  columns(): Promise<SyncColumns>;
}

/** What one pass did, and what the probe must remember of it once it committed. */
interface PassOutcome {
  tally: PassTally;
  horizon: string;
  stalled: boolean;
  snapshot: Snapshot;
  /** The pass's own transactions: its own and its fenced writes'. */
  ownXids: string[];
  /** It read in bulk (statistics.ts: the tables it wrote are analyzed once it has committed). */
  bulk: boolean;
  /**
   * The pass's last statements, sent with its COMMIT: the missions whose
   * agent turned inactive, and the transaction's id. Rejected when they
   * failed, and then the COMMIT rolled back.
   */
  closing: Promise<[MissionHeldByAgent[], string | undefined]>;
}

/** Which missions' agent status a pass works out again: those whose rows may have changed their agent, and all of the users whose agents it changed. */
function agentStatusScope({ touched, agentMayChange }: PassTally): AgentStatusScope {
  if (touched === null) return { missions: null, agentUsers: null };
  const missions = [...agentMayChange].map(splitViewKey).map((v) => ({ userId: v.userId, missionId: v.recordId }));
  const agentUsers: string[] = [];
  for (const key of touched) {
    const v = splitViewKey(key);
    if (v.tableName === AGENTS.tableName) agentUsers.push(v.userId);
  }
  return { missions, agentUsers };
}

const emptyScope = (scope: AgentStatusScope): boolean => scope.missions?.length === 0 && scope.agentUsers?.length === 0;

/** The missions a pass changed and those whose agent it held, each once; null past TOUCHED_CAP. */
function withHeld(changed: { userId: string; missionId: string }[], held: MissionHeldByAgent[]): { userId: string; missionId: string }[] | null {
  const seen = new Set(changed.map((m) => keyOf(m.userId, m.missionId)));
  for (const h of held) {
    if (seen.has(keyOf(h.userId, h.missionId))) continue;
    seen.add(keyOf(h.userId, h.missionId));
    changed.push({ userId: h.userId, missionId: h.missionId });
  }
  return changed.length > TOUCHED_CAP ? null : changed;
}

export function createProjection(deps: ProjectionDeps): Projection {
  const { sql, log } = deps;
  const loadChunk = Math.max(1, deps.loadChunk ?? LOAD_CHUNK);
  const batchRows = Math.max(1, Math.min(deps.batchRows, FETCH_ROWS));
  const probe = createSnapshotProbe();
  const reportMalformed = createMalformedReporter(log);
  let columnsCache: SyncColumns | undefined;
  let visibility: boolean | undefined;
  let warnedStall = false;
  /** Serialized bytes per record, measured by flushes. */
  let recordBytes = INITIAL_RECORD_BYTES;
  /** A pass of this process committed its agent statuses: rows left NULL (a migration) are worked out. */
  let agentStatusesChecked = false;

  async function columns(): Promise<SyncColumns> {
    columnsCache ??= await detectSyncColumns(sql, deps.syncSchema);
    return columnsCache;
  }

  /** Records an incremental pass's cache may hold: the configured cap, or fewer when records are big. */
  function cacheCap(): number {
    return Math.max(1, Math.min(deps.cacheRecords, Math.floor(CACHE_BUDGET_BYTES / (recordBytes * HEAP_PER_JSON_BYTE))));
  }

  function warnStall(): void {
    if (warnedStall) return;
    warnedStall = true;
    log.warn('projection horizon stalled: this role cannot see other transactions; grant pg_read_all_stats so it can advance');
  }

  /** Reads the window from the cursor's horizon, merges it, and returns what it counted and the positions to keep. */
  async function readNewRows(
    tx: TxSql,
    cols: SyncColumns,
    from: { cursor: Cursor; horizon: string; bulk: boolean; stored: string[]; passXid: string },
    ownXids: string[],
  ): Promise<{ tally: PassTally; applied: string[] }> {
    const { cursor, horizon, bulk, stored, passXid } = from;
    const batches = createBatchReader({ keeps: keepsRow(horizon), reportMalformed });
    const { tally } = batches;
    const pipeline = createWritePipeline({
      tx,
      sql,
      fence: !bulk && poolSize(sql) >= 2 ? passXid : undefined,
      onWriteXid: (xid) => ownXids.push(xid),
      onWritten: (n) => (tally.recordsWritten += n),
      onRecordBytes: (bytes) => (recordBytes = bytes),
    });
    const newRecords = () => createRecordCache({ tx, cols, pipeline, tally, reportMalformed });
    const records = newRecords();
    const window = { horizon: cursor.horizon, appliedIds: stored.map((p) => p.slice(p.indexOf('|') + 1)) };
    const ctx = { tx, sql, cols, log, window, batchRows, batches, records, newRecords, pipeline };
    if (bulk) await readInBulk(ctx, { cacheRecords: deps.cacheRecords });
    else await readIncrementally(ctx, { loadChunk, cacheCap });
    await records.flushAndForget();
    return { tally, applied: [...stored.filter(keepsPosition(horizon)), ...tally.appliedNow] };
  }

  async function pass(tx: TxSql, cols: SyncColumns, onUnchanged: (() => void) | undefined): Promise<PassOutcome | null> {
    visibility ??= await canSeeAllTransactions(tx);
    // Sent at once, run in this order: the lock and the cursor first; the horizon before the
    // rows (horizon.ts says why the order matters), and the snapshot too: whatever commits
    // after it is read by a later pass; the applied set, and the wait for any write-back
    // still in flight from a pass that died (write-fence.ts), which must come before anything
    // is loaded. A pass that reads nothing has no use for those two, and one that finds the
    // lock taken none for the rest: cheap statements, where a round trip of their own was not.
    const [cursor, reading, { snapshot, changed }, stored, passXid] = await Promise.all([
      lockCursor(tx, LOCK_KEY),
      readHorizon(tx, visibility),
      probe.probe(tx),
      readApplied(tx),
      waitForFencedWrites(tx, LOCK_KEY),
    ]);
    if (!cursor) {
      onUnchanged?.();
      return null;
    }
    // The fence's statement takes the refresh lock again, and a lock this transaction holds is always granted.
    if (passXid === null) throw new Error('projection pass: the write fence found the refresh lock taken, expected it held by this pass');
    const stalled = reading.horizon === null;
    if (stalled) warnStall();
    const horizon = reading.horizon !== null && reading.horizon > cursor.horizon ? reading.horizon : cursor.horizon;
    const ownXids: string[] = [];
    let tally: PassTally = emptyTally();
    // When nothing committed since the last read, no row can be new: nothing is read,
    // and the cursor prunes its stored set in place (applied stays undefined).
    let applied: string[] | undefined;
    let bulk = false;
    if (changed) {
      bulk = !stalled && cursor.horizon < instantOf(new Date(Date.now() - BULK_LAG_MS));
      ({ tally, applied } = await readNewRows(tx, cols, { cursor, horizon, bulk, stored, passXid }, ownXids));
    }
    // After every snapshot write of the pass has landed, and with it: a mission is never due
    // past its agent's pause for longer than the pass that projected the pause. Only when the
    // pass may have changed a mission's agent (a busy pass with nothing of ours, or 1,000
    // updates that name no agent, pay nothing for it), and sent with the cursor's write,
    // which does not wait for it.
    const scope = agentStatusScope(tally);
    const statuses = !emptyScope(scope) || !agentStatusesChecked;
    if (!statuses && tally.rowsApplied === 0) onUnchanged?.();
    // Not waited for: postgres.js sends the COMMIT right behind them, a round trip less for
    // every pass. Should one fail, the transaction is aborted and its COMMIT rolls it back
    // (Postgres answers it without an error); refresh() learns it from their answers.
    const closing = Promise.all([
      statuses ? updateAgentStatuses(tx, scope) : [],
      writeCursor(tx, { horizon, exists: cursor.exists, applied }),
    ]);
    closing.catch(() => undefined); // awaited in refresh(), after the commit
    return { tally, horizon, stalled, snapshot, ownXids, bulk, closing };
  }

  async function refresh(opts: RefreshOptions = {}): Promise<RefreshStats> {
    const started = performance.now();
    const cols = await columns();
    let outcome: PassOutcome | null;
    let held: MissionHeldByAgent[] = [];
    try {
      outcome = await sql.begin((tx) => pass(tx, cols, opts.onUnchanged));
      // The COMMIT took only if the statements sent with it did.
      if (outcome) {
        const [statusesHeld, xid] = await outcome.closing;
        held = statusesHeld;
        if (xid) outcome.ownXids.unshift(xid);
      }
    } catch (err: unknown) {
      probe.forget();
      throw err;
    }
    // Counted in the pass's time: a catch-up is not over until the planner knows what it wrote.
    if (outcome?.bulk) await analyzeAfterBulk(sql, log);
    const durationMs = performance.now() - started;
    if (!outcome) return { ran: false, rowsApplied: 0, rowsSkipped: 0, recordsWritten: 0, rebuilds: 0, horizon: '', stalled: false, durationMs, changed: [], changedAgents: [] };
    // Committed: every row the snapshot shows is applied. Only our transactions since it are excused.
    probe.committed(outcome.snapshot, outcome.ownXids);
    agentStatusesChecked = true;
    const { rowsApplied, rowsSkipped, recordsWritten, rebuilds } = outcome.tally;
    if (rowsSkipped) deps.onMalformed?.(rowsSkipped);
    if (rowsApplied) deps.onApplied?.(rowsApplied);
    const touched = outcome.tally.touched === null ? null : [...outcome.tally.touched].map(splitViewKey);
    const changed = touched && withHeld(touched.filter((v) => v.tableName === MISSIONS.tableName).map((v) => ({ userId: v.userId, missionId: v.recordId })), held);
    const changedAgents = touched && touched.filter((v) => v.tableName === AGENTS.tableName).map((v) => ({ userId: v.userId, agentId: v.recordId }));
    return { ran: true, rowsApplied, rowsSkipped, recordsWritten, rebuilds, horizon: outcome.horizon, stalled: outcome.stalled, durationMs, changed, changedAgents };
  }

  return { refresh, columns };
}
