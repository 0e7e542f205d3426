/**
 * streamChanges against a real database: both reads (incremental, heap
 * order; bulk, by record in replay order) yield exactly the rows readLog()
 * yields, with created_at in the same fixed-width form, whatever the
 * timestamp's precision or year; the bulk read groups records and sends rows
 * older than their record's last delete as [id, created_at] only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { detectSyncColumns, fixedWidthCreatedAt, streamChanges, type SupersededRow } from '../../src/projection/change-source.js';
import { MIN_INSTANT } from '../../src/projection/instant.js';
import type { ChangeRow } from '../../src/projection/lww.js';
import { insertRows, readLog, readRecords, rowMaker } from './log-db.js';
import { pino } from 'pino';
import { createSql } from '../../src/db/pool.js';
import { createProjection } from '../../src/projection/refresh.js';
import { oracleReplay } from './oracle.js';

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

describe('fixedWidthCreatedAt', () => {
  it('pads to six fraction digits and a Z, and leaves fixed-width text alone', () => {
    expect(fixedWidthCreatedAt('2025-01-09T23:58:27')).toBe('2025-01-09T23:58:27.000000Z');
    expect(fixedWidthCreatedAt('2025-01-09T23:58:27.4')).toBe('2025-01-09T23:58:27.400000Z');
    expect(fixedWidthCreatedAt('2025-01-09T23:58:27.123456')).toBe('2025-01-09T23:58:27.123456Z');
    expect(fixedWidthCreatedAt('10000-01-01T00:00:00.000000Z')).toBe('10000-01-01T00:00:00.000000Z');
  });
});

describe('streamChanges', () => {
  it('reads every row as readLog does, in both modes; bulk groups records in replay order and shortens superseded rows', async () => {
    await db.sql`TRUNCATE sync_changes`;
    const rows = [
      row({ recordId: 'm2', createdAt: '2025-01-09T23:58:27.400000Z' }),
      row({ recordId: 'm1', createdAt: '2025-01-09T23:58:28.123456Z', data: { title: 'quote " and \\ and ☃', n: 1.5, deep: { a: [1, null] } } }),
      row({ recordId: 'm1', createdAt: '2025-01-09T23:58:27.000000Z', fieldMeta: { title: { at: '2025-01-09T23:58:27Z', actor: { kind: 'user' } } } }),
      row({ recordId: 'm1', op: 'delete', data: null, createdAt: '2025-01-09T23:58:28.000001Z' }),
      row({ recordId: 'm1', createdAt: '2025-01-09T23:59:00.100000Z', fieldTimestamps: { title: '2025-01-09T23:59:00Z' } }),
      row({ recordId: 'm3', userId: 'ü"ser', createdAt: '0999-12-31T23:59:59.999999Z' }),
      row({ recordId: 'm3', userId: 'ü"ser', createdAt: '12000-01-01T00:00:00.000000Z' }),
      row({ recordId: 'm2', userId: 'u0', createdAt: '2025-01-09T23:58:27.400000Z', op: 'strange', data: { text: 'tab\there, newline\n, backslash \\ and \\n' } }),
    ];
    await insertRows(db.sql, rows);
    const expected = new Map((await readLog(db.sql)).map((r) => [r.id, r]));
    expect(expected.size).toBe(rows.length);

    const incremental = await read('incremental');
    expect(incremental.superseded).toEqual([]);
    expect(new Map(incremental.rows.map((r) => [r.id, r]))).toEqual(expected);

    {
      const bulk = await read('bulk');
      // Older than m1's delete: the 27.0 row comes as [id, created_at].
      const olderThanDelete = [rows[2]!];
      expect(bulk.superseded).toEqual(olderThanDelete.map((r) => ({ id: r.id, createdAt: expected.get(r.id)!.createdAt })));
      const full = bulk.rows.map((r) => r.id);
      expect(full).toEqual([rows[3]!, rows[1]!, rows[4]!, rows[7]!, rows[0]!, rows[5]!, rows[6]!].map((r) => r.id));
      for (const r of bulk.rows) expect(r).toEqual(expected.get(r.id));
    }
  });
});

describe('a bulk catch-up', () => {
  it.each([1, 3])('on a pool of %i connection(s) equals a full replay (one connection reads in its own transaction)', async (max) => {
    await db.sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.projection_cursor`;
    const rows = Array.from({ length: 40 }, (_, i) =>
      row({
        recordId: `m${i % 4}`,
        op: i % 9 === 8 ? 'delete' : 'update',
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
      expect(await readRecords(db.sql)).toEqual(oracleReplay(await readLog(db.sql)));
    } finally {
      await sql.end();
    }
  });
});
