/**
 * mergeDeltas (snapshot-store.ts) merges records in SQL, without loading
 * them. Against lww.ts on a real database: for random stored records and
 * random new rows that are not deletes, it merges exactly the records it
 * may (stored, every new row after the last delete), and leaves each of
 * them as saveStates would write the full replay of old and new rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../support/db.js';
import { normalizeRow, replay, type Change, type RecordState } from '../../src/projection/lww.js';
import { keyOf, mergeDeltas, saveStates, type Delta } from '../../src/projection/snapshot-store.js';
import { rowArb, toRows } from './history.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

/** Where the expected snapshots are written: the same table, under other user ids. */
const EXPECTED = 'expected:';

const COLUMNS = 'fields, versions, last_delete, max_pos, present, soft_deleted, state, next_run_at';

function byRecord(changes: Change[]): Map<string, Change[]> {
  const out = new Map<string, Change[]>();
  for (const c of changes) {
    const k = keyOf(c.userId, c.recordId);
    out.set(k, [...(out.get(k) ?? []), c]);
  }
  return out;
}

const as = (s: RecordState, userId: string): RecordState => ({ ...s, userId });

describe('mergeDeltas', () => {
  it('merges in SQL what lww.ts merges, and only the records it may', async () => {
    let merges = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(rowArb, { minLength: 2, maxLength: 40, size: 'max' }), fc.double({ min: 0.2, max: 0.8, noNaN: true }), async (specs, split) => {
        await db.sql`TRUNCATE mana_ai.mission_snapshots`;
        const changes = toRows(specs).flatMap((r) => {
          const n = normalizeRow(r);
          return n.ok ? [n.change] : [];
        });
        const cut = Math.floor(changes.length * split);
        const stored = byRecord(changes.slice(0, cut));
        const incoming = byRecord(changes.slice(cut).filter((c) => c.kind === 'data'));

        const states = [...stored.values()].map((cs) => replay(cs[0]!.userId, cs[0]!.recordId, cs));
        await db.sql.begin((tx) => saveStates(tx, states));

        const deltas: Delta[] = [];
        const mayMerge = new Set<string>();
        const expected: RecordState[] = [];
        for (const [k, cs] of incoming) {
          const state = replay(cs[0]!.userId, cs[0]!.recordId, cs);
          const minPos = cs.reduce((m, c) => (c.pos < m ? c.pos : m), cs[0]!.pos);
          deltas.push({ state, minPos });
          const before = stored.get(k);
          if (!before) continue;
          const last = replay(state.userId, state.recordId, before).lastDelete;
          if (last !== null && minPos <= last) continue;
          mayMerge.add(k);
          expected.push(as(replay(state.userId, state.recordId, [...before, ...cs]), EXPECTED + state.userId));
        }
        // Records not merged keep what was stored.
        for (const s of states) if (!mayMerge.has(keyOf(s.userId, s.recordId))) expected.push(as(s, EXPECTED + s.userId));
        await db.sql.begin((tx) => saveStates(tx, expected));

        const { merged } = await mergeDeltas(db.sql, deltas);
        merges += merged.size;
        expect([...merged].sort()).toEqual([...mayMerge].sort());
        const differing = await db.sql.unsafe(`
          SELECT a.user_id, a.mission_id FROM mana_ai.mission_snapshots a
          FULL JOIN mana_ai.mission_snapshots e ON e.user_id = '${EXPECTED}' || a.user_id AND e.mission_id = a.mission_id
          WHERE NOT a.user_id LIKE '${EXPECTED}%' AND (e.user_id IS NULL OR ROW(${COLUMNS.split(', ').map((c) => `a.${c}`).join(', ')}) IS DISTINCT FROM ROW(${COLUMNS.split(', ').map((c) => `e.${c}`).join(', ')}))`);
        expect(differing).toEqual([]);
      }),
      { numRuns: 300 },
    );
    // The property must not hold vacuously.
    expect(merges).toBeGreaterThan(200);
  }, 120_000);
});
