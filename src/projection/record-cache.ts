/**
 * A pass's working set of record states: loaded from the snapshots (or
 * empty), merged with the pass's changes (lww.ts), rebuilt from the log when
 * a late delete asks for it, and written back through the write pipeline.
 */
import type { TxSql } from '../db/pool.js';
import { applyChange, emptyState, replay, type RecordState } from './lww.js';
import { decodeView, viewRowsMany, type SyncColumns } from './change-source.js';
import { loadStates } from './snapshot-store.js';
import { projectedTable } from './tables.js';
import { splitViewKey, viewKey } from './views.js';
import type { PassTally } from './pass-tally.js';
import type { WritePipeline } from './write-pipeline.js';
import type { Change, ChangeRow } from './wire.js';

/** Records' states written per statement by a flush; a bulk pass writes completed records in such chunks. */
export const FLUSH_CHUNK = 1000;
/** Views rebuilt from the log per statement. */
const REBUILD_CHUNK = 200;

/** Views (views.ts viewKey) whose changes merge together, with the load of their stored states (none: nothing stored). */
export interface MergeChunk {
  keys: string[];
  load?: Promise<Map<string, RecordState>>;
}

export interface RecordCacheDeps {
  tx: TxSql;
  cols: SyncColumns;
  pipeline: WritePipeline;
  tally: PassTally;
  reportMalformed: (row: ChangeRow, reason: string) => void;
}

export interface RecordCache {
  readonly size: number;
  has(key: string): boolean;
  /** True while the snapshots table is known empty and nothing was written yet: loads are skipped. */
  readonly storeEmpty: boolean;
  assumeStoreEmpty(empty: boolean): void;
  /**
   * Starts loading these records' stored states. A record is never loaded
   * while a write of it is in flight: records written back stay cached until
   * a flush, which waits for its writes, and a database merge waits for its
   * writes before its records are loaded.
   */
  startLoad(keys: string[]): Promise<Map<string, RecordState>>;
  /** These views are rebuilt from the log before they are written (a view that gained a space). */
  markRebuild(keys: Iterable<string>): void;
  /**
   * Merges each chunk's changes into its states as its load arrives. With
   * writeEach, a record that changed is written back right away (unless it
   * waits for a rebuild) and stays cached, so a later batch merges into it.
   */
  mergeChunks(chunks: MergeChunk[], byKey: Map<string, Change[]>, writeEach: boolean): Promise<void>;
  /** Rebuilds, writes back and forgets every cached view, except `keep`'s (a record a bulk read may still be reading). */
  flushAndForget(keep?: { tableName: string; recordId: string }): Promise<void>;
}

export function createRecordCache(deps: RecordCacheDeps): RecordCache {
  const { tx, cols, pipeline, tally } = deps;
  const cache = new Map<string, RecordState>();
  const dirty = new Set<string>();
  const rebuild = new Set<string>();
  let storeEmpty = false;

  async function writeBack(states: RecordState[]): Promise<void> {
    if (states.length === 0) return;
    storeEmpty = false;
    await pipeline.writeBack(states);
  }

  function startLoad(keys: string[]): Promise<Map<string, RecordState>> {
    const load = loadStates(pipeline.loadDb, keys.map(splitViewKey));
    load.catch(() => undefined); // awaited in order by mergeChunks
    return load;
  }

  function markRebuild(keys: Iterable<string>): void {
    for (const k of keys) {
      rebuild.add(k);
      if (!cache.has(k)) cache.set(k, emptyFor(k));
    }
  }

  function emptyFor(k: string): RecordState {
    const { tableName, userId, recordId } = splitViewKey(k);
    return emptyState(tableName, userId, recordId);
  }

  async function mergeChunks(chunks: MergeChunk[], byKey: Map<string, Change[]>, writeEach: boolean): Promise<void> {
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

  /** These views replayed from the log, in chunks of REBUILD_CHUNK per statement. */
  async function replayFromLog(states: RecordState[]): Promise<RecordState[]> {
    const out: RecordState[] = [];
    for (let i = 0; i < states.length; i += REBUILD_CHUNK) {
      const chunk = states.slice(i, i + REBUILD_CHUNK);
      const rows = await viewRowsMany(tx, cols, chunk.map((s) => ({ table: projectedTable(s.tableName), userId: s.userId, recordId: s.recordId })));
      chunk.forEach(({ tableName, userId, recordId }, j) => out.push(replay(tableName, userId, recordId, decodeView(rows[j]!, deps.reportMalformed))));
    }
    return out;
  }

  /** Writes the dirty states, except those `kept`, and drops them from the cache. */
  async function flush(kept: (k: string) => boolean): Promise<void> {
    const keys = [...dirty].filter((k) => !kept(k));
    for (const k of keys) dirty.delete(k);
    for (let i = 0; i < keys.length; i += FLUSH_CHUNK) {
      const states = keys.slice(i, i + FLUSH_CHUNK).map((k) => cache.get(k)).filter((st): st is RecordState => st !== undefined);
      for (const state of states) cache.delete(viewKey(state.tableName, state.userId, state.recordId));
      // The next chunk is gathered while Postgres writes this one.
      await writeBack(states);
    }
    await pipeline.drain();
  }

  async function flushAndForget(keep?: { tableName: string; recordId: string }): Promise<void> {
    // A view of the record a bulk read is still reading stays.
    const kept = (k: string) => {
      if (!keep) return false;
      const v = splitViewKey(k);
      return v.tableName === keep.tableName && v.recordId === keep.recordId;
    };
    const due = [...rebuild].filter((k) => !kept(k));
    const rebuilt = await replayFromLog(due.map((k) => cache.get(k)!));
    due.forEach((k, i) => {
      cache.set(k, rebuilt[i]!);
      dirty.add(k);
      rebuild.delete(k);
    });
    tally.rebuilds += due.length;
    await flush(kept);
    for (const k of cache.keys()) if (!kept(k)) cache.delete(k);
  }

  return {
    get size() {
      return cache.size;
    },
    has: (key) => cache.has(key),
    get storeEmpty() {
      return storeEmpty;
    },
    assumeStoreEmpty(empty) {
      storeEmpty = empty;
    },
    startLoad,
    markRebuild,
    mergeChunks,
    flushAndForget,
  };
}
