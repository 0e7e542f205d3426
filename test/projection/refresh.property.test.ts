/**
 * The projection against the devices, on the real database: after any
 * sequence of incremental refreshes, every view in mana_ai.mission_snapshots
 * and mana_ai.agent_snapshots equals what the user's devices hold
 * (oracle.ts), with its author and derived columns, and the due scan
 * returns exactly the missions the runner on their author's device would
 * run, at any instant.
 *
 * Random logs (history.ts) are inserted into sync_changes with explicit
 * ids, created_at and columns, in a random permutation cut into batches —
 * rows "commit" out of created_at order — with a real projection.refresh()
 * after every batch (the first a bulk read, the others incremental), and
 * the snapshots compared with the oracle each time.
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
import { derivedOf } from '../../src/projection/due-rule.js';
import { viewKey } from '../../src/projection/views.js';
import { scanDue } from '../../src/schedule/due.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { oracleViews, runnerWouldRun, type LogRow, type ViewResult } from './oracle.js';
import { rowArb, toRows } from './history.js';
import { insertRows, resetProjection } from './log-db.js';

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
  author: string | null;
  softDeleted: boolean;
  state: string | null;
  nextRunAt: string | null;
  listed: boolean;
  spaceId: string | null;
}

const TS = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

async function snapshots(sql: Sql): Promise<Map<string, SnapshotView>> {
  const cols = (id: string) => `jsonb_build_object('id', ${id}) || fields AS record, author, soft_deleted AS "softDeleted", state,
    to_char(next_run_at AT TIME ZONE 'UTC', ${TS}) AS "nextRunAt", listed, space_id AS "spaceId"`;
  // The checker reads whole tables: a sequential scan even where the indexed variant turns them
  // off for the projection's statements (forced through an index, this read took seconds on
  // PostgreSQL 15 once the held transaction kept every reset's dead rows).
  const rows = await sql.begin(async (tx) => {
    await tx`SET LOCAL enable_seqscan = on`;
    return tx<(SnapshotView & { t: string; u: string; r: string })[]>`
      SELECT 'aiMissions' AS t, user_id AS u, mission_id AS r, ${tx.unsafe(cols('mission_id'))} FROM mana_ai.mission_snapshots WHERE present
      UNION ALL
      SELECT 'agents', user_id, agent_id, ${tx.unsafe(cols('agent_id'))} FROM mana_ai.agent_snapshots WHERE present`;
  });
  return new Map(rows.map(({ t, u, r, ...view }) => [viewKey(t, u, r), view]));
}

/** What the snapshot columns must be for an oracle view (due-rule.ts read off the oracle's record). */
function expectedView(v: ViewResult): SnapshotView {
  const d = derivedOf((k) => v.record[k], null);
  return { record: v.record, author: v.author, softDeleted: d.soft_deleted, state: d.state, nextRunAt: d.next_run_at, listed: d.listed, spaceId: d.space_id };
}

const historyArb = fc.array(rowArb, { minLength: 1, maxLength: 50, size: 'max' }).chain((specs) =>
  fc.record({
    specs: fc.constant(specs),
    order: fc.shuffledSubarray([...specs.keys()], { minLength: specs.length, maxLength: specs.length }),
    cuts: fc.uniqueArray(fc.nat(specs.length), { maxLength: 8, size: 'max' }),
    batchRows: fc.integer({ min: 1, max: 12 }),
    cacheRecords: fc.integer({ min: 1, max: 8 }),
    loadChunk: fc.integer({ min: 1, max: 4 }),
    pool: fc.constantFrom(1 as const, 2 as const, 10 as const),
    nowSec: fc.array(fc.integer({ min: -3, max: 10 }), { minLength: 2, maxLength: 2 }),
  }),
);

/** The due scan at an instant against the runner of each author's device. */
async function checkDue(rows: LogRow[], atMs: number): Promise<number> {
  const nowIso = new Date(atMs).toISOString();
  const { due } = await scanDue(db.sql, { limit: 10_000, at: nowIso });
  const expected = [...oracleViews(rows)]
    .filter(([k, v]) => k.startsWith('aiMissions\u0000') && runnerWouldRun(v, k.split('\u0000')[1]!, nowIso))
    .map(([k]) => k.split('\u0000').slice(1).join('/'))
    .sort();
  expect(due.map((m) => `${m.userId}/${m.missionId}`).sort()).toEqual(expected);
  return expected.length;
}

describe('incremental refresh against the devices, on the real database', () => {
  it('after any sequence of refreshes, every view equals what its devices hold, and exactly the runnable missions are due', async () => {
    const silent = pino({ level: 'silent' });
    let runs = 0;
    let due = 0;
    await fc.assert(
      fc.asyncProperty(historyArb, async ({ specs, order, cuts, batchRows, cacheRecords, loadChunk, pool, nowSec }) => {
        runs++;
        await resetProjection(db.sql);
        const rows = toRows(specs, baseMs);
        // Small batches, a small cache and tiny load chunks force the cursor's batching, the
        // cache eviction and the pipelined loads and write-backs.
        const projection = createProjection({ sql: pools[pool], log: silent, batchRows, cacheRecords, loadChunk });

        const permuted = order.map((i) => rows[i]!);
        const points = [...new Set([0, ...cuts, permuted.length])].sort((a, b) => a - b);
        const committed: LogRow[] = [];
        let read = 0;
        for (let i = 0; i + 1 < points.length; i++) {
          const batch = permuted.slice(points[i], points[i + 1]);
          await insertRows(db.sql, batch);
          committed.push(...batch);
          const stats = await projection.refresh();
          expect(stats.ran).toBe(true);
          expect(stats.stalled).toBe(false);
          // The horizon never passes the held transaction, so nothing generated is below it.
          expect(stats.horizon < new Date(baseMs).toISOString()).toBe(true);
          read += stats.rowsApplied + stats.rowsSkipped;

          const expected = new Map([...oracleViews(committed)].map(([k, v]) => [k, expectedView(v)]));
          expect(await snapshots(db.sql)).toEqual(expected);
        }
        for (const s of nowSec) due += await checkDue(committed, baseMs + s * 1000 + 250);
        // Every row was read exactly once: never skipped by the cursor, never re-read.
        expect(read).toBe(rows.length);
        const again = await projection.refresh();
        expect(again.rowsApplied + again.rowsSkipped).toBe(0);
        expect(again.recordsWritten).toBe(0);
      }),
      { numRuns: 60, endOnFailure: false },
    );
    expect(runs).toBeGreaterThanOrEqual(60);
    expect(due).toBeGreaterThan(10);
  }, 240_000);
});
