/**
 * The projection invariant without I/O: delivering a log in any order, in
 * any batches (late commits), with rebuilds on late deletes, yields exactly
 * the contract's full replay.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { applyChange, emptyState, materialize, normalizeRow, replay, type Change, type ChangeRow, type RecordState } from '../../src/projection/lww.js';
import { oracleReplay } from './oracle.js';
import { rowArb, toRows } from './history.js';

function incremental(batches: ChangeRow[][]): Map<string, Record<string, unknown>> {
  const states = new Map<string, RecordState>();
  const seen: ChangeRow[] = [];
  for (const batch of batches) {
    seen.push(...batch);
    const rebuild = new Set<string>();
    for (const row of batch) {
      const n = normalizeRow(row);
      if (!n.ok) continue;
      const key = `${n.change.userId}\u0000${n.change.recordId}`;
      if (!states.has(key)) states.set(key, emptyState(n.change.userId, n.change.recordId));
      if (applyChange(states.get(key)!, n.change) === 'rebuild') rebuild.add(key);
    }
    for (const key of rebuild) {
      const [userId, recordId] = key.split('\u0000') as [string, string];
      const changes = seen
        .filter((r) => r.userId === userId && r.recordId === recordId)
        .map(normalizeRow)
        .flatMap((n) => (n.ok ? [n.change as Change] : []));
      states.set(key, replay(userId, recordId, changes));
    }
  }
  const out = new Map<string, Record<string, unknown>>();
  for (const [k, s] of states) {
    const rec = materialize(s);
    if (rec) out.set(k, rec);
  }
  return out;
}

/** Splits rows into batches after a permutation: models commits out of created_at order. */
const deliveryArb = fc.array(rowArb, { minLength: 1, maxLength: 40 }).chain((specs) =>
  fc.record({
    specs: fc.constant(specs),
    order: fc.shuffledSubarray([...specs.keys()], { minLength: specs.length, maxLength: specs.length }),
    cuts: fc.array(fc.nat(specs.length), { maxLength: 6 }),
  }),
);

function batchesOf(rows: ChangeRow[], order: number[], cuts: number[]): ChangeRow[][] {
  const permuted = order.map((i) => rows[i]!);
  const points = [...new Set([0, ...cuts, permuted.length])].sort((a, b) => a - b);
  const out: ChangeRow[][] = [];
  for (let i = 0; i + 1 < points.length; i++) out.push(permuted.slice(points[i], points[i + 1]));
  return out;
}

describe('LWW projection invariant', () => {
  it('incremental delivery in any order and batching equals a full replay', () => {
    fc.assert(
      fc.property(deliveryArb, ({ specs, order, cuts }) => {
        const rows = toRows(specs);
        expect(incremental(batchesOf(rows, order, cuts))).toEqual(oracleReplay(rows));
      }),
      { numRuns: 3000 },
    );
  });

  it('applying the same rows twice changes nothing (idempotent)', () => {
    fc.assert(
      fc.property(deliveryArb, ({ specs, order, cuts }) => {
        const rows = toRows(specs);
        const batches = batchesOf(rows, order, cuts);
        expect(incremental([...batches, ...batches])).toEqual(oracleReplay(rows));
      }),
      { numRuns: 1000 },
    );
  });
});
