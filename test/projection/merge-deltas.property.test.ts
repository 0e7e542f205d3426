/**
 * mergeDeltas (merge-deltas.ts) merges views in SQL, without loading them.
 * Against lww.ts on a real database: for random stored views and random new
 * rows it may be sent (plain, no hard delete), it merges exactly the views
 * it may — stored, plain, and either present with every new row after the
 * first present-making one, or absent with only data rows, all after every
 * row it holds — and leaves each of them as saveStates would write lww.ts's
 * merge of the new rows into the stored state.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../support/db.js';
import { applyChange, mergeableInSql, replay, type RecordState } from '../../src/projection/lww.js';
import { saveStates } from '../../src/projection/snapshot-store.js';
import { deltaFor, mergeDeltas, type Delta } from '../../src/projection/merge-deltas.js';
import { viewKey } from '../../src/projection/views.js';
import { decodeRow, type Change } from '../../src/projection/wire.js';
import { rowArb, toChangeRow, toRows } from './history.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

/** Where the expected snapshots are written: the same tables, under other user ids. */
const EXPECTED = 'expected:';

const COLUMNS = 'fields, versions, last_delete, max_pos, first_pos, first_user, early_soft_delete, plain, present, soft_deleted, state, next_run_at, listed, author, space_id';

/** Each writer's changes as its own view (the routing is views.ts' business, not this test's). */
function byView(changes: Change[]): Map<string, Change[]> {
  const out = new Map<string, Change[]>();
  for (const c of changes) {
    const k = viewKey(c.tableName, c.userId, c.recordId);
    out.set(k, [...(out.get(k) ?? []), c]);
  }
  return out;
}

const as = (s: RecordState, userId: string): RecordState => ({ ...s, userId });

function differing(table: string, id: string): string {
  const a = COLUMNS.split(', ').map((c) => `a.${c}`).join(', ');
  const e = COLUMNS.split(', ').map((c) => `e.${c}`).join(', ');
  return `SELECT a.user_id, a.${id} FROM ${table} a
    FULL JOIN ${table} e ON e.user_id = '${EXPECTED}' || a.user_id AND e.${id} = a.${id}
    WHERE NOT a.user_id LIKE '${EXPECTED}%' AND (e.user_id IS NULL OR ROW(${a}) IS DISTINCT FROM ROW(${e}))`;
}

describe('mergeDeltas', () => {
  it('merges in SQL what lww.ts merges, and only the views it may', async () => {
    let merges = 0;
    let absentMerges = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(rowArb, { minLength: 2, maxLength: 40, size: 'max' }), fc.double({ min: 0.2, max: 0.8, noNaN: true }), async (specs, split) => {
        await db.sql`TRUNCATE mana_ai.mission_snapshots, mana_ai.agent_snapshots`;
        const changes = toRows(specs).flatMap((r) => {
          const d = decodeRow(toChangeRow(r));
          return d.ok && d.change ? [d.change] : [];
        });
        const cut = Math.floor(changes.length * split);
        const stored = byView(changes.slice(0, cut));
        const incoming = byView(changes.slice(cut));

        const states = [...stored.values()].map((cs) => replay(cs[0]!.tableName, cs[0]!.userId, cs[0]!.recordId, cs));
        await db.sql.begin((tx) => saveStates(tx, states));

        const deltas: Delta[] = [];
        const mayMerge = new Set<string>();
        const expected: RecordState[] = [];
        for (const [k, cs] of incoming) {
          // Only what the incremental pass sends: plain rows, no hard delete.
          if (!mergeableInSql(cs)) continue;
          const { tableName, userId, recordId } = cs[0]!;
          const delta = deltaFor(tableName, userId, recordId, cs);
          deltas.push(delta);
          const before = stored.get(k);
          if (!before) continue;
          const state = replay(tableName, userId, recordId, before);
          if (!state.plain) continue;
          const minPos = cs.reduce((m, c) => (c.pos < m ? c.pos : m), cs[0]!.pos);
          expect(delta.minPos).toBe(minPos);
          if (state.firstPos !== null) {
            if (minPos <= state.firstPos) continue;
          } else {
            // Absent: only data rows, all after every row the view holds.
            if (!cs.every((c) => c.kind === 'data') || minPos <= (state.maxPos ?? '')) continue;
            absentMerges++;
          }
          mayMerge.add(k);
          // What lww.ts makes of the stored view and the new rows, in any order (they merge exactly).
          for (const c of cs) expect(applyChange(state, c)).toBe('applied');
          expected.push(as(state, EXPECTED + userId));
        }
        // Views not merged keep what was stored.
        for (const s of states) if (!mayMerge.has(viewKey(s.tableName, s.userId, s.recordId))) expected.push(as(s, EXPECTED + s.userId));
        await db.sql.begin((tx) => saveStates(tx, expected));

        const { merged } = await mergeDeltas(db.sql, deltas);
        merges += merged.size;
        expect([...merged].sort()).toEqual([...mayMerge].sort());
        expect(await db.sql.unsafe(differing('mana_ai.mission_snapshots', 'mission_id'))).toEqual([]);
        expect(await db.sql.unsafe(differing('mana_ai.agent_snapshots', 'agent_id'))).toEqual([]);
      }),
      { numRuns: 300 },
    );
    // The property must not hold vacuously.
    expect(merges).toBeGreaterThan(80);
    expect(absentMerges).toBeGreaterThan(10);
  }, 120_000);
});
