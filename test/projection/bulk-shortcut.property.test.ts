/**
 * The bulk read's shortcut (change-stream.ts) is a second expression of the
 * rules: it sends a row as [id, created_at] only when a later hard delete
 * makes it irrelevant. On a real database, against the pure rules:
 * - every row its SQL calls a hard delete decodes (wire.ts) as one;
 * - dropping the rows it shortens from the log changes no user's view of
 *   any record (oracle.ts), however members' rows are spread over spaces.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../support/db.js';
import { detectSyncColumns, type SupersededRow } from '../../src/projection/change-source.js';
import { hardDeleteSql, streamChanges } from '../../src/projection/change-stream.js';
import { MIN_INSTANT } from '../../src/projection/instant.js';
import { decodeRow } from '../../src/projection/wire.js';
import { oracleViews } from './oracle.js';
import { rowArb, toChangeRow, toRows, type RowSpec } from './history.js';
import { insertRows, readLog } from './log-db.js';

let db: TestDb;

beforeAll(async () => {
  // The histories hold rows mana-sync's table refuses (an unknown op): the shortcut must leave them to the decoder too.
  db = await createTestDb({ acceptRowsManaSyncRefuses: true });
});

afterAll(async () => {
  await db?.drop();
});

/** Rows with many hard deletes (as mana-sync stores one: data {}, no metadata), else as history.ts makes them. */
const deleteHeavyArb = fc
  .tuple(rowArb, fc.integer({ min: 0, max: 9 }))
  .map(([r, n]): RowSpec => (n < 3 ? { ...r, op: 'delete', dataShape: n === 0 ? 'null' : 'object', deletedAt: { v: undefined }, badMeta: false } : r));

/** One record's log, several users and spaces, many deletes: where the shortcut has work. */
const logArb = fc.array(
  deleteHeavyArb.map((r): RowSpec => ({ ...r, table: 'aiMissions', record: 'r1' })),
  { minLength: 1, maxLength: 30 },
);

async function shortened(): Promise<SupersededRow[]> {
  const cols = await detectSyncColumns(db.sql);
  const out: SupersededRow[] = [];
  await db.sql.begin(async (tx) => {
    await streamChanges(tx, cols, { horizon: MIN_INSTANT, appliedIds: [] }, { batchRows: 7, bulk: true }, async (_rows, superseded) => {
      out.push(...superseded);
    });
  });
  return out;
}

describe('the bulk read’s shortcut', () => {
  it('takes for hard deletes only rows the rules decode as hard deletes', async () => {
    const cols = await detectSyncColumns(db.sql);
    let hard = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(deleteHeavyArb, { minLength: 1, maxLength: 30 }), async (specs) => {
        await db.sql`TRUNCATE sync_changes`;
        await insertRows(db.sql, toRows(specs));
        const ids = new Set((await db.sql.unsafe<{ id: string }[]>(`SELECT s.id::text AS id FROM sync_changes s WHERE ${hardDeleteSql(cols)}`)).map((r) => r.id));
        for (const row of await readLog(db.sql)) {
          if (!ids.has(row.id)) continue;
          hard++;
          const d = decodeRow(toChangeRow(row));
          expect(d.ok && d.change?.kind, JSON.stringify(row)).toBe('hard');
        }
      }),
      { numRuns: 150 },
    );
    expect(hard).toBeGreaterThan(50);
  }, 60_000);

  it('leaves out only rows whose removal changes no view', async () => {
    let dropped = 0;
    await fc.assert(
      fc.asyncProperty(logArb, async (specs) => {
        await db.sql`TRUNCATE sync_changes`;
        await insertRows(db.sql, toRows(specs));
        const log = await readLog(db.sql);
        const gone = new Set((await shortened()).map((s) => s.id));
        dropped += gone.size;
        expect(oracleViews(log.filter((r) => !gone.has(r.id)))).toEqual(oracleViews(log));
      }),
      { numRuns: 300 },
    );
    expect(dropped).toBeGreaterThan(100);
  }, 120_000);
});
