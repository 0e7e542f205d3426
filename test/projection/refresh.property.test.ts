/**
 * The projection invariant against the real database: after any sequence of
 * incremental refreshes, mana_ai.mission_snapshots equals a full replay of
 * the whole log (oracle.ts, the contract read literally).
 *
 * Random histories (history.ts) are inserted into sync_changes with explicit
 * ids, created_at and metadata, in a random permutation cut into batches —
 * rows "commit" out of created_at order — with a real projection.refresh()
 * after every batch, and the snapshots compared with the oracle each time.
 *
 * created_at values must stay above the projection's horizon, or the
 * projection is right to treat them as already applied: a separate
 * transaction is held open for the whole file, so the horizon stays below
 * its start, and every generated instant lies after that start.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pino } from 'pino';
import postgres from 'postgres';
import type { TestDb } from '../support/db.js';
import { createProjectionDb } from './projection-db.js';
import { createProjection } from '../../src/projection/refresh.js';
import { parseInstant } from '../../src/projection/instant.js';
import type { ChangeRow } from '../../src/projection/lww.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { oracleReplay } from './oracle.js';
import { rowArb, toRows } from './history.js';
import { insertRows } from './log-db.js';

let db: TestDb;
/**
 * The same database through pools of one and two connections: a pass of a
 * pool of one loads and writes in its own transaction, one of two shares its
 * second connection between its loads and fenced writes (db.sql has ten).
 */
let pools: Record<1 | 2 | 10, Sql>;
let holder: postgres.Sql;
let held: postgres.ReservedSql;
let baseMs: number;

beforeAll(async () => {
  db = await createProjectionDb();
  pools = { 1: createSql(db.url, { max: 1 }), 2: createSql(db.url, { max: 2 }), 10: db.sql };
  holder = postgres(db.url, { max: 1, onnotice: () => {} });
  held = await holder.reserve();
  await held`BEGIN`;
  const [row] = await held<{ xid: string; start: Date }[]>`SELECT txid_current()::text AS xid, now() AS start`;
  // Whole seconds so history.ts' "…Z without millis" spelling applies; a margin after the start.
  baseMs = Math.ceil(row!.start.getTime() / 1000) * 1000 + 2000;
});

afterAll(async () => {
  if (held) {
    await held`ROLLBACK`.catch(() => undefined);
    held.release();
  }
  await holder?.end({ timeout: 5 });
  await Promise.all([pools?.[1].end({ timeout: 5 }), pools?.[2].end({ timeout: 5 })]);
  await db?.drop();
});

interface SnapshotView {
  record: Record<string, unknown>;
  softDeleted: boolean;
  state: string | null;
  nextRunAt: string | null;
}

async function snapshots(sql: Sql): Promise<Map<string, SnapshotView>> {
  const rows = await sql<{ userId: string; missionId: string; record: Record<string, unknown>; softDeleted: boolean; state: string | null; nextRunAt: string | null }[]>`
    SELECT user_id AS "userId", mission_id AS "missionId",
           jsonb_build_object('id', mission_id) || fields AS record,
           soft_deleted AS "softDeleted", state,
           to_char(next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "nextRunAt"
    FROM mana_ai.mission_snapshots WHERE present`;
  return new Map(rows.map(({ userId, missionId, ...view }) => [`${userId}\u0000${missionId}`, view]));
}

/** What the snapshot columns must be for an oracle record. */
function expectedView(record: Record<string, unknown>): SnapshotView {
  return {
    record,
    softDeleted: Boolean(record['deletedAt']),
    state: typeof record['state'] === 'string' ? record['state'] : null,
    nextRunAt: parseInstant(record['nextRunAt']),
  };
}

const historyArb = fc.array(rowArb, { minLength: 1, maxLength: 60, size: 'max' }).chain((specs) =>
  fc.record({
    specs: fc.constant(specs),
    order: fc.shuffledSubarray([...specs.keys()], { minLength: specs.length, maxLength: specs.length }),
    cuts: fc.uniqueArray(fc.nat(specs.length), { maxLength: 8, size: 'max' }),
    batchRows: fc.integer({ min: 1, max: 12 }),
    cacheRecords: fc.integer({ min: 1, max: 8 }),
    loadChunk: fc.integer({ min: 1, max: 4 }),
    pool: fc.constantFrom(1 as const, 2 as const, 10 as const),
  }),
);

describe('incremental refresh against the real database', () => {
  it('after any sequence of incremental refreshes, the snapshots equal a full replay of the whole log', async () => {
    const silent = pino({ level: 'silent' });
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(historyArb, async ({ specs, order, cuts, batchRows, cacheRecords, loadChunk, pool }) => {
        runs++;
        await db.sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.projection_cursor`;
        const rows = toRows(specs, baseMs);
        for (const r of rows) expect(Date.parse(r.createdAt)).toBeGreaterThan(baseMs - 1);
        // Small batches, a small cache and tiny load chunks force the cursor's batching, the
        // cache eviction and the pipelined loads and write-backs.
        const projection = createProjection({ sql: pools[pool], log: silent, batchRows, cacheRecords, loadChunk });

        const permuted = order.map((i) => rows[i]!);
        const points = [...new Set([0, ...cuts, permuted.length])].sort((a, b) => a - b);
        const committed: ChangeRow[] = [];
        let read = 0;
        for (let i = 0; i + 1 < points.length; i++) {
          const batch = permuted.slice(points[i], points[i + 1]);
          await insertRows(db.sql, batch);
          committed.push(...batch);
          const stats = await projection.refresh();
          expect(stats.ran).toBe(true);
          expect(stats.stalled).toBe(false);
          // The first pass reads a backlog in bulk, by record in replay order: no delete comes late.
          if (i === 0) expect(stats.rebuilds).toBe(0);
          // The horizon never passes the held transaction, so nothing generated is below it.
          expect(stats.horizon < new Date(baseMs).toISOString()).toBe(true);
          read += stats.rowsApplied + stats.rowsSkipped;

          const expected = new Map([...oracleReplay(committed)].map(([k, rec]) => [k, expectedView(rec)]));
          expect(await snapshots(db.sql)).toEqual(expected);
        }
        // Every row was read exactly once: never skipped by the cursor, never re-read.
        expect(read).toBe(rows.length);
        const again = await projection.refresh();
        expect(again.rowsApplied + again.rowsSkipped).toBe(0);
        expect(again.recordsWritten).toBe(0);
      }),
      { numRuns: 40, endOnFailure: false },
    );
    expect(runs).toBeGreaterThanOrEqual(40);
  }, 120_000);
});
