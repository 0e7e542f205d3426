/**
 * A bulk pass, for a backlog reaching far back (cold start, long outage):
 * the rows grouped by record, in replay order. A record is complete when
 * the next one starts, so its views are written back in the next chunk and
 * forgotten, superseded values die young, and a delete never arrives after
 * rows that follow it (no rebuilds, but where a member's first row in a
 * space comes in a later pass than the others'). Rows a later hard delete
 * supersedes come back without their data. It holds about FLUSH_CHUNK views
 * at a time.
 */
import type { Sql, TxSql } from '../db/pool.js';
import { streamChanges } from './change-stream.js';
import type { SupersededRow } from './change-source.js';
import { FLUSH_CHUNK, type MergeChunk, type RecordCache } from './record-cache.js';
import { snapshotsEmpty } from './snapshot-store.js';
import { createViewRouter, stampsEmpty } from './record-spaces.js';
import { poolSize } from './write-pipeline.js';
import type { ReadContext } from './read-context.js';
import type { ChangeRow } from './wire.js';

/** Session settings for a bulk read, local to its transaction. */
async function prepareBulkRead(tx: TxSql): Promise<void> {
  // JIT compiling the bulk query costs more than it saves.
  await tx`SET LOCAL jit = off`;
  // A cursor is planned for its first 10 % of rows by default: here the index on
  // (table_name, record_id, created_at), fetching the heap in random order (~60 % slower
  // than a seq scan and a sort). The whole result is read, so plan for all of it.
  await tx`SET LOCAL cursor_tuple_fraction = 1`;
}

export async function readInBulk(ctx: ReadContext, opts: { cacheRecords: number }): Promise<void> {
  const [emptySnapshots, emptyStamps] = await Promise.all([snapshotsEmpty(ctx.tx), stampsEmpty(ctx.tx)]);

  /** Merges one part's rows: records of a part never come in another, so each has its own cache and stamps. */
  function partReader(records: RecordCache, parts: number) {
    records.assumeStoreEmpty(emptySnapshots);
    // The parts share the memory one read holds.
    const held = Math.max(1, Math.floor(Math.min(FLUSH_CHUNK, opts.cacheRecords) / parts));
    const router = createViewRouter({ tx: ctx.tx, storeEmpty: emptyStamps, groupedByRecord: true });

    async function applyBatch(rows: ChangeRow[], superseded: SupersededRow[]): Promise<void> {
      const changes = ctx.batches.take(rows, superseded);
      const { byKey, rebuild } = await router.route(rows, changes);
      ctx.batches.touch(byKey);
      records.markRebuild(rebuild);
      const cached: string[] = [];
      const missing: string[] = [];
      for (const k of byKey.keys()) (records.has(k) ? cached : missing).push(k);
      const chunks: MergeChunk[] = [{ keys: cached }];
      // Grouped by record, a view not cached was never written by this read either (a record's
      // views are written once the next record starts, and its rows never come again): from a
      // store that was empty when the read began there is nothing to load.
      if (missing.length > 0) chunks.push(emptySnapshots ? { keys: missing } : { keys: missing, load: records.startLoad(missing) });
      await records.mergeChunks(chunks, byKey, false);
      // Records arrive one after another: all but the last row's are complete. A batch of
      // superseded rows only (a record's rows before its hard delete) adds no view and does not
      // say which record is being read: flushing then wrote and forgot the views of the record
      // still being read, and its next row was merged into an empty view, losing the rest.
      const last = rows.at(-1);
      if (records.size <= held || last === undefined) return;
      const keep = { tableName: last.tableName, recordId: last.recordId };
      await router.forget(keep);
      await records.flushAndForget(keep);
    }

    async function done(): Promise<void> {
      await router.forget();
      await records.flushAndForget();
    }
    return { applyBatch, done };
  }

  // The rows are read on a second connection, so this transaction's loads and writes
  // never queue behind the FETCHes in flight (and Postgres keeps sorting and sending
  // while it writes). Its snapshot is taken after the horizon was read: whatever
  // commits after it is at or above the horizon and read by the next pass, as always.
  // With a connection more, the records are read in two parts on two connections, merged
  // as their rows come: both parts are sorted at once before the first row comes, where one
  // sort kept a core idle for its first seconds, and both backends build rows after it.
  const size = poolSize(ctx.sql);
  const parts = size >= 3 ? BULK_PARTS : 1;
  ctx.log.info({ since: ctx.window.horizon, separate: size >= 2, parts }, 'projection: reading a backlog in bulk');
  const readPart = async (rtx: TxSql, index: number) => {
    const reader = partReader(index === 0 ? ctx.records : ctx.newRecords(), parts);
    await prepareBulkRead(rtx);
    await streamChanges(rtx, ctx.cols, ctx.window, { batchRows: ctx.batchRows, bulk: true, part: { index, of: parts } }, reader.applyBatch);
    await reader.done();
  };
  if (size < 2) await readPart(ctx.tx, 0);
  else if (parts === 1) await ctx.sql.begin((rtx) => readPart(rtx, 0));
  else await readPartsOnOneSnapshot(ctx.sql, parts, readPart);
}

/**
 * Reads every part in a transaction of its own, all on the first one's
 * snapshot: parts with snapshots of their own could each see a different set
 * of commits (a mission's insert in one, its agent's earlier one not yet in
 * the other), and a pass would apply a mission without the agent it belongs to.
 */
async function readPartsOnOneSnapshot(sql: Sql, parts: number, readPart: (rtx: TxSql, index: number) => Promise<void>): Promise<void> {
  let exported!: (id: string) => void;
  let notExported!: (err: unknown) => void;
  const snapshot = new Promise<string>((resolve, reject) => ((exported = resolve), (notExported = reject)));
  snapshot.catch(() => undefined);
  // One per other part: settled once it imported the snapshot, or ended without it.
  const settles: (() => void)[] = [];
  const taken = Array.from({ length: parts - 1 }, () => new Promise<void>((resolve) => settles.push(resolve)));
  const readers = Array.from({ length: parts }, (_, index) =>
    sql.begin('isolation level repeatable read', async (rtx) => {
      if (index === 0) {
        try {
          const [row] = await rtx<{ id: string }[]>`SELECT pg_export_snapshot() AS id`;
          exported(row!.id);
        } catch (err: unknown) {
          notExported(err);
          throw err;
        }
        await readPart(rtx, 0);
        // An exported snapshot lives as long as its transaction: kept open until every part took it.
        await Promise.all(taken);
        return;
      }
      const id = await snapshot;
      await rtx.unsafe(`SET TRANSACTION SNAPSHOT '${id.replace(/'/g, "''")}'`);
      settles[index - 1]!();
      await readPart(rtx, index);
    }),
  );
  readers.slice(1).forEach((r, i) => void r.then(settles[i], settles[i]));
  await allEnded(readers);
}

/** Parts of a bulk read on connections of their own (the pool needs one more for the pass). */
const BULK_PARTS = 2;

/** Waits for every read to end; the first failure fails the whole read. */
async function allEnded(reads: Promise<unknown>[]): Promise<void> {
  const outcomes = await Promise.allSettled(reads);
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) throw failed.reason;
}
