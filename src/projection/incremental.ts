/**
 * An incremental pass: the rows of the last moments, in heap order. It does
 * not load what it merges, mostly: Postgres merges each view whose new rows
 * are plain and hold no hard delete field by field (merge-deltas.ts), in
 * chunks sent at once on other pool connections; only the rest is loaded in
 * chunks, merged here and written back chunk by chunk as their loads arrive.
 */
import { streamChanges } from './change-stream.js';
import type { SupersededRow } from './change-source.js';
import { mergeableInSql } from './lww.js';
import { deltaFor, mergeDeltas, type Delta } from './merge-deltas.js';
import type { MergeChunk } from './record-cache.js';
import { createViewRouter } from './record-spaces.js';
import { splitViewKey, type StoredStamps } from './views.js';
import type { ReadContext } from './read-context.js';
import type { Change, ChangeRow } from './wire.js';

export interface IncrementalOptions {
  /** Views per merge or load statement. */
  loadChunk: number;
  /** Views the cache may hold before it is written back and dropped. */
  cacheCap: () => number;
}

export async function readIncrementally(ctx: ReadContext, opts: IncrementalOptions): Promise<void> {
  const { records } = ctx;
  // Stamps are looked up only for rows with a real space, so no emptiness check up front.
  const router = createViewRouter({ tx: ctx.tx, storeEmpty: false, groupedByRecord: false });

  /** Sends these views' rows to the database to merge, in chunks; returns the keys it could not merge. */
  async function mergeInDatabase(keys: string[], byKey: Map<string, Change[]>): Promise<string[]> {
    const sent: { keys: string[]; write: Promise<{ merged: Set<string> }> }[] = [];
    for (let i = 0; i < keys.length; i += opts.loadChunk) {
      const chunk = keys.slice(i, i + opts.loadChunk);
      const deltas = chunk.map((k): Delta => {
        const changes = byKey.get(k)!;
        const { tableName, userId, recordId } = splitViewKey(k);
        return deltaFor(tableName, userId, recordId, changes);
      });
      sent.push({ keys: chunk, write: (await ctx.pipeline.send(chunk, (db) => mergeDeltas(db, deltas))).sent });
    }
    const left: string[] = [];
    for (const { keys: chunk, write } of sent) {
      const { merged } = await write;
      ctx.batches.tally.recordsWritten += merged.size;
      for (const k of chunk) if (!merged.has(k)) left.push(k);
    }
    return left;
  }

  async function applyBatch(rows: ChangeRow[], superseded: SupersededRow[], stored?: StoredStamps): Promise<void> {
    const changes = ctx.batches.take(rows, superseded);
    const { byKey, rebuild } = await router.route(rows, changes, stored);
    ctx.batches.touch(byKey);
    records.markRebuild(rebuild);
    const cached: string[] = [];
    const missing: string[] = [];
    const blind: string[] = [];
    for (const [k, list] of byKey) {
      if (records.has(k)) cached.push(k);
      else if (!records.storeEmpty && mergeableInSql(list)) blind.push(k);
      else missing.push(k);
    }
    missing.push(...(await mergeInDatabase(blind, byKey)));
    const chunks: MergeChunk[] = [{ keys: cached }];
    for (let i = 0; i < missing.length; i += opts.loadChunk) {
      const keys = missing.slice(i, i + opts.loadChunk);
      chunks.push(records.storeEmpty ? { keys } : { keys, load: records.startLoad(keys) });
    }
    await records.mergeChunks(chunks, byKey, true);
  }

  await streamChanges(ctx.tx, ctx.cols, ctx.window, { batchRows: ctx.batchRows }, async (rows, superseded, stored) => {
    await applyBatch(rows, superseded, stored);
    // Bound memory whatever the log's size: write back and forget.
    if (records.size > opts.cacheCap()) {
      await router.forget();
      await records.flushAndForget();
    }
  });
  await router.forget();
}
