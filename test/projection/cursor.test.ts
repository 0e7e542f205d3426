/**
 * The applied-set pruning rule has two spellings, one for a pass that read
 * rows (in memory) and one for a pass that read nothing (in SQL, in place):
 * both must keep exactly the same positions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../support/db.js';
import { keepsPosition, writeCursor } from '../../src/projection/cursor.js';
import { readCursor } from './log-db.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

const HORIZON = '2026-03-01T12:00:00.500000Z';
const ID = '00000000-0000-4000-8000-000000000001';

/** Prunes `stored` in SQL against `horizon` and returns what the cursor keeps. */
async function prunedInSql(stored: string[], horizon: string): Promise<string[]> {
  await db.sql.begin(async (tx) => {
    await writeCursor(tx, { horizon: '0001-01-01T00:00:00.000000Z', exists: false, applied: stored });
    await writeCursor(tx, { horizon, exists: true });
  });
  return (await readCursor(db.sql))!.applied;
}

describe('the applied-set pruning rule', () => {
  it('keeps the same positions in memory and in SQL, at the edges', async () => {
    const stored = [
      `2026-03-01T12:00:00.499999Z|${ID}`, // just below: dropped
      `2026-03-01T12:00:00.500000Z|${ID}`, // at the horizon: kept
      `2026-03-01T12:00:00.500001Z|${ID}`, // above: kept
      `2025-12-31T23:59:59.999999Z|${ID}`,
      `10000-01-01T00:00:00.000000Z|${ID}`, // beyond year 9999: kept (a text compare would drop it)
      `2027-01-01T00:00:00.000000Z|${ID}`,
    ];
    const expected = stored.filter(keepsPosition(HORIZON));
    expect(expected).toEqual([stored[1], stored[2], stored[4], stored[5]]);
    expect(await prunedInSql(stored, HORIZON)).toEqual(expected);
  });

  it('keeps the same positions in memory and in SQL for any instants', async () => {
    const instant = fc
      .date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true })
      .chain((d) => fc.integer({ min: 0, max: 999 }).map((us) => `${d.toISOString().slice(0, 23)}${String(us).padStart(3, '0')}Z`));
    const position = fc.oneof(instant, fc.constant('10001-01-01T00:00:00.000000Z')).map((t) => `${t}|${ID}`);
    await fc.assert(
      fc.asyncProperty(fc.array(position, { maxLength: 20 }), instant, async (stored, horizon) => {
        expect(await prunedInSql(stored, horizon)).toEqual(stored.filter(keepsPosition(horizon)));
      }),
      { numRuns: 60 },
    );
  });
});
