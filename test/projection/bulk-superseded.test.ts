/**
 * A bulk read with small batches and a small cache, where a batch holds only
 * rows superseded by a later hard delete (another user's rows of the same
 * record id): the views of the record still being read stay cached, so the
 * next row merges into the view as it stands, not into an empty one.
 * Found by refresh.property.test.ts (seed 65268422): a later row of the
 * record was merged into an empty view, and the fields an earlier row had
 * set were lost.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pino } from 'pino';
import { createSql, type Sql } from '../../src/db/pool.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { createProjection } from '../../src/projection/refresh.js';
import { insertRows, readRecord, resetProjection, rowMaker, testClock, viewsMatchOracle } from './log-db.js';

let db: TestDb;
let one: Sql;

beforeAll(async () => {
  db = await createTestDb();
  one = createSql(db.url, { max: 1 });
});

afterAll(async () => {
  await one?.end({ timeout: 5 });
  await db?.drop();
});

const { at, c } = testClock();
const row = rowMaker(() => ({ recordId: 'r1', spaceId: null }));

it.each([
  ['one connection', () => one],
  ['a pool of ten (two parts)', () => db.sql],
])('keeps the record being read across a batch of superseded rows only (%s)', async (_name, pool) => {
  await resetProjection(db.sql);
  await insertRows(db.sql, [
    // Three users' records with one id; u1's insert is superseded by u1's later delete.
    row({ userId: 'u3', op: 'insert', createdAt: c(0), data: { title: 'u3', createdAt: at(0), updatedAt: at(0) } }),
    row({ userId: 'u2', op: 'insert', createdAt: c(1), data: { title: 'first', createdAt: at(1), updatedAt: at(1) } }),
    row({ userId: 'u1', op: 'insert', createdAt: c(2), data: { title: 'gone', createdAt: at(2), updatedAt: at(2) } }),
    row({ userId: 'u2', op: 'update', createdAt: c(3), data: { state: 'paused' }, fieldMeta: { state: at(3) } }),
    row({ userId: 'u1', op: 'delete', createdAt: c(4), data: {} }),
  ]);
  // One row per batch and one view cached: the read evicts after every row.
  const projection = createProjection({ sql: pool(), log: pino({ level: 'silent' }), batchRows: 1, cacheRecords: 1, loadChunk: 1 });
  const stats = await projection.refresh();
  expect(stats.rowsApplied).toBe(5);
  expect(await readRecord(db.sql, 'u2', 'r1')).toEqual({ id: 'r1', title: 'first', createdAt: at(1), updatedAt: at(1), state: 'paused' });
  const { actual, expected } = await viewsMatchOracle(db.sql);
  expect(actual).toEqual(expected);
});
