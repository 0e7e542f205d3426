/**
 * After a bulk pass, the planner knows how many views it wrote
 * (src/projection/statistics.ts). The snapshot table starts out as an
 * ANALYZE taken in the middle of a catch-up leaves it: pages, and no rows
 * counted. Without the ANALYZE after the pass, the planner keeps estimating
 * one row for a table of hundreds, and plans each merge statement of the
 * passes that follow by hashing the whole table.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { captureLog } from '../support/log-capture.js';
import { createProjection } from '../../src/projection/refresh.js';
import { ANALYZE_LOCK_TIMEOUT_MS } from '../../src/projection/statistics.js';
import { insertRows, resetProjection, rowMaker, testClock } from './log-db.js';

let db: TestDb;
const { log, lines } = captureLog('warn');

const MISSIONS = 300;
const { at, c } = testClock();
const row = rowMaker(() => ({}));

beforeAll(async () => {
  db = await createTestDb();
  // Autovacuum stays out of the way: the statistics below are the test's own.
  await db.sql`ALTER TABLE mana_ai.mission_snapshots SET (autovacuum_enabled = false)`;
});

afterAll(async () => {
  await db?.drop();
});

/** The planner's estimate of the snapshot table's rows. */
async function estimatedViews(): Promise<number> {
  const [plan] = await db.sql<{ 'QUERY PLAN': { Plan: { 'Plan Rows': number } }[] }[]>`EXPLAIN (FORMAT JSON) SELECT * FROM mana_ai.mission_snapshots`;
  return plan!['QUERY PLAN'][0]!.Plan['Plan Rows'];
}

beforeEach(async () => {
  lines.length = 0;
  await resetProjection(db.sql);
  // What an ANALYZE during a catch-up's transaction records: the pages its rows fill, none of them counted.
  await db.sql`INSERT INTO mana_ai.mission_snapshots (user_id, mission_id) SELECT 'gone', g::text FROM generate_series(1, 500) g`;
  await db.sql`DELETE FROM mana_ai.mission_snapshots`;
  await db.sql`ANALYZE mana_ai.mission_snapshots`;
  expect(await estimatedViews()).toBe(1);
  await insertRows(
    db.sql,
    Array.from({ length: MISSIONS }, (_, i) =>
      row({ userId: `u${i % 30}`, recordId: `m${i}`, op: 'insert', createdAt: c(i), data: { title: `m${i}`, createdAt: at(i), updatedAt: at(i) } }),
    ),
  );
});

it('analyzes the tables a bulk pass wrote once it has committed', async () => {
  const stats = await createProjection({ sql: db.sql, log, batchRows: 100, cacheRecords: 1000 }).refresh();
  expect(stats.rowsApplied).toBe(MISSIONS);
  const estimate = await estimatedViews();
  expect(estimate).toBeGreaterThanOrEqual(MISSIONS * 0.9);
  expect(estimate).toBeLessThanOrEqual(MISSIONS * 1.1);
  expect(lines).toEqual([]);
});

it('gives up on the ANALYZE when a VACUUM holds its lock, logging why, and the pass still lands', async () => {
  const holder = await db.sql.reserve();
  try {
    await holder`BEGIN`;
    await holder`LOCK TABLE mana_ai.record_spaces IN SHARE UPDATE EXCLUSIVE MODE`;
    const started = performance.now();
    const stats = await createProjection({ sql: db.sql, log, batchRows: 100, cacheRecords: 1000 }).refresh();
    expect(stats.rowsApplied).toBe(MISSIONS);
    expect(performance.now() - started).toBeGreaterThanOrEqual(ANALYZE_LOCK_TIMEOUT_MS * 0.9);
    const [present] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.mission_snapshots WHERE present`;
    expect(present?.n).toBe(MISSIONS);
    expect(lines).toHaveLength(1);
    expect(lines[0]!['msg']).toMatch(/ANALYZE after a bulk pass failed/);
    expect(JSON.stringify(lines[0]!['err'])).toMatch(/lock timeout/);
  } finally {
    await holder`ROLLBACK`;
    holder.release();
  }
});
