/**
 * streamChanges against a real database: both reads (incremental, heap
 * order; bulk, by record, in replay order whoever wrote them) yield exactly
 * the rows of both projected tables as readLog() has them — created_at in
 * the same fixed-width form whatever its precision or year, and the columns
 * decodeRow needs (the actor only when it matters, as the same decoding
 * shows) — and the bulk read sends rows a later hard delete of the same
 * user supersedes as [id, created_at] only, unless their space is a real one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { detectSyncColumns, fixedWidthCreatedAt, type SupersededRow } from '../../src/projection/change-source.js';
import { streamChanges } from '../../src/projection/change-stream.js';
import { MIN_INSTANT } from '../../src/projection/instant.js';
import { decodeRow, type ChangeRow } from '../../src/projection/wire.js';
import { insertRows, readLog, resetProjection, rowMaker, viewsMatchOracle } from './log-db.js';
import { toChangeRow } from './history.js';
import { pino } from 'pino';
import { createSql } from '../../src/db/pool.js';
import { createProjection } from '../../src/projection/refresh.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb({ acceptRowsManaSyncRefuses: true });
});

afterAll(async () => {
  await db?.drop();
});

const row = rowMaker((n) => ({ data: { title: `t${n}` } }));

async function read(mode: 'incremental' | 'bulk'): Promise<{ rows: ChangeRow[]; superseded: SupersededRow[] }> {
  const cols = await detectSyncColumns(db.sql);
  const rows: ChangeRow[] = [];
  const superseded: SupersededRow[] = [];
  const onBatch = async (r: ChangeRow[], s: SupersededRow[]) => {
    rows.push(...r);
    superseded.push(...s);
  };
  const window = { horizon: MIN_INSTANT, appliedIds: [] };
  await db.sql.begin(async (tx) => {
    await streamChanges(tx, cols, window, { batchRows: 3, bulk: mode === 'bulk' }, onBatch);
  });
  return { rows, superseded };
}

/** A streamed row carries the log's columns as they are, and decodes as the full row does. */
function expectSameRow(streamed: ChangeRow, full: ChangeRow): void {
  const { actor: _a, origin: _o, schemaVersion: _s, ...core } = full;
  expect(streamed).toMatchObject(core);
  expect(decodeRow(streamed)).toEqual(decodeRow(full));
}

describe('fixedWidthCreatedAt', () => {
  it('pads to six fraction digits and a Z, and leaves fixed-width text alone', () => {
    expect(fixedWidthCreatedAt('2025-01-09T23:58:27')).toBe('2025-01-09T23:58:27.000000Z');
    expect(fixedWidthCreatedAt('2025-01-09T23:58:27.4')).toBe('2025-01-09T23:58:27.400000Z');
    expect(fixedWidthCreatedAt('2025-01-09T23:58:27.123456')).toBe('2025-01-09T23:58:27.123456Z');
    expect(fixedWidthCreatedAt('10000-01-01T00:00:00.000000Z')).toBe('10000-01-01T00:00:00.000000Z');
  });
});

describe('streamChanges', () => {
  it('reads every row as readLog does, in both modes; bulk groups records and shortens superseded rows', async () => {
    await db.sql`TRUNCATE sync_changes`;
    const rows = [
      row({ recordId: 'm2', createdAt: '2025-01-09T23:58:27.400000Z' }),
      row({ recordId: 'm1', createdAt: '2025-01-09T23:58:28.123456Z', data: { title: 'quote " and \\ and ☃', n: 1.5, deep: { a: [1, null] } } }),
      row({ recordId: 'm1', createdAt: '2025-01-09T23:58:27.000000Z', fieldMeta: { title: '2025-01-09T23:58:27Z' }, actor: { kind: 'user' }, origin: 'user' }),
      row({ recordId: 'm1', op: 'delete', data: {}, createdAt: '2025-01-09T23:58:28.000001Z' }),
      row({ recordId: 'm1', createdAt: '2025-01-09T23:59:00.100000Z', fieldTimestamps: { title: '2025-01-09T23:59:00Z' } }),
      row({ recordId: 'm3', userId: 'ü"ser', createdAt: '0999-12-31T23:59:59.999999Z' }),
      row({ recordId: 'm3', userId: 'ü"ser', createdAt: '12000-01-01T00:00:00.000000Z' }),
      row({ recordId: 'm2', userId: 'u0', createdAt: '2025-01-09T23:58:27.400000Z', op: 'strange', data: { text: 'tab\there, newline\n, backslash \\ and \\n' } }),
      // Before m1's delete too, but in a real space: another member's view may hold it without that delete.
      row({ recordId: 'm1', createdAt: '2025-01-09T23:58:27.500000Z', spaceId: 'space-1' }),
      // An insert without data (its envelope is the record) and an actor devices drop: the extra columns come along.
      row({ recordId: 'm4', op: 'insert', data: {}, createdAt: '2025-01-09T23:58:29.000000Z', actor: { kind: 'user' }, origin: 'user', schemaVersion: 3, spaceId: '_personal:u1' }),
      row({ recordId: 'm4', createdAt: '2025-01-09T23:58:30.000000Z', actor: 'not an object' }),
      row({ tableName: 'agents', recordId: 'a1', op: 'insert', data: { name: 'Mana', state: 'active' }, createdAt: '2025-01-09T23:58:31.000000Z' }),
    ];
    await insertRows(db.sql, rows);
    const expected = new Map((await readLog(db.sql)).map((r) => [r.id, toChangeRow(r)]));
    expect(expected.size).toBe(rows.length);

    const incremental = await read('incremental');
    expect(incremental.superseded).toEqual([]);
    expect(incremental.rows).toHaveLength(rows.length);
    for (const r of incremental.rows) expectSameRow(r, expected.get(r.id)!);

    const bulk = await read('bulk');
    // Older than m1's (hard) delete by the same user, in no real space: the 27.0 row comes as [id, created_at].
    expect(bulk.superseded).toEqual([{ id: rows[2]!.id, createdAt: expected.get(rows[2]!.id)!.createdAt }]);
    const order = [11, 8, 3, 1, 4, 0, 7, 5, 6, 9, 10].map((i) => rows[i]!.id);
    expect(bulk.rows.map((r) => r.id)).toEqual(order);
    for (const r of bulk.rows) expectSameRow(r, expected.get(r.id)!);
  });
});

describe('a bulk catch-up', () => {
  it.each([1, 3])('on a pool of %i connection(s) equals a full replay (one connection reads in its own transaction)', async (max) => {
    await resetProjection(db.sql);
    const rows = Array.from({ length: 40 }, (_, i) =>
      row({
        recordId: `m${i % 4}`,
        op: i % 9 === 8 ? 'delete' : 'insert',
        data: i % 9 === 8 ? null : { title: `t${i}`, state: 'active' },
        createdAt: `2025-01-09T23:${String(10 + (i % 37)).padStart(2, '0')}:27.${String(i).padStart(6, '0')}Z`,
      }),
    );
    await insertRows(db.sql, rows);
    const sql = createSql(db.url, { max });
    try {
      const stats = await createProjection({ sql, log: pino({ level: 'silent' }), batchRows: 5, cacheRecords: 2 }).refresh();
      expect(stats.rowsApplied).toBe(rows.length);
      expect(stats.rebuilds).toBe(0);
      const { actual, expected } = await viewsMatchOracle(db.sql);
      expect(actual).toEqual(expected);
    } finally {
      await sql.end();
    }
  });
});
