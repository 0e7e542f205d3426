/**
 * The projection's rules without I/O against the sequential model of the
 * devices (oracle.ts): delivering a log in any order and any batches (late
 * commits), routing each row to its views as a pass does (views.ts), with
 * rebuilds where lww.ts or the router ask for them, yields every user's
 * view of every record exactly, its author, and the runner's due verdict.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { applyChange, emptyState, materialize, replay, type RecordState } from '../../src/projection/lww.js';
import { emptyStampBook, routeRows, splitViewKey } from '../../src/projection/views.js';
import { decodeRow, type Change } from '../../src/projection/wire.js';
import { decodeView } from '../../src/projection/change-source.js';
import { derivedColumns } from '../../src/projection/snapshot-store.js';
import { oracleViews, runnerWouldRun, viewOf, type LogRow } from './oracle.js';
import { rowArb, toChangeRow, toRows } from './history.js';

type Meta = 'field_meta' | 'field_timestamps';

/** A pass at a time: the book of stamps and the states persist (the database), rows arrive in batches. */
function incremental(batches: LogRow[][], meta: Meta): Map<string, RecordState> {
  // Not grouped by record: a view that gains a space is rebuilt (record-spaces.test.ts has the grouped book).
  const book = emptyStampBook(false);
  const states = new Map<string, RecordState>();
  const seen: LogRow[] = [];
  for (const batch of batches) {
    seen.push(...batch);
    const rows = batch.map((r) => toChangeRow(r, meta));
    const changes = rows.map((r): Change | null => {
      const d = decodeRow(r);
      return d.ok ? d.change : null;
    });
    const { byKey, rebuild } = routeRows(rows, changes, book);
    for (const [k, list] of byKey) {
      if (rebuild.has(k)) continue;
      const { tableName, userId, recordId } = splitViewKey(k);
      const state = states.get(k) ?? emptyState(tableName, userId, recordId);
      states.set(k, state);
      for (const c of list) if (applyChange(state, c) === 'rebuild') rebuild.add(k);
    }
    for (const k of rebuild) {
      const { tableName, userId, recordId } = splitViewKey(k);
      const changes = decodeView(viewOf(seen, tableName, userId, recordId).map((r) => toChangeRow(r, meta)));
      states.set(k, replay(tableName, userId, recordId, changes));
    }
  }
  return states;
}

function records(states: Map<string, RecordState>): Map<string, { record: Record<string, unknown>; author: string | null }> {
  const out = new Map<string, { record: Record<string, unknown>; author: string | null }>();
  for (const [k, s] of states) {
    const record = materialize(s);
    if (record) out.set(k, { record, author: derivedColumns(s).author });
  }
  return out;
}

/** Splits rows into batches after a permutation: models commits out of created_at order. */
const deliveryArb = fc.array(rowArb, { minLength: 1, maxLength: 40 }).chain((specs) =>
  fc.record({
    specs: fc.constant(specs),
    order: fc.shuffledSubarray([...specs.keys()], { minLength: specs.length, maxLength: specs.length }),
    cuts: fc.array(fc.nat(specs.length), { maxLength: 6 }),
    meta: fc.constantFrom<Meta>('field_meta', 'field_meta', 'field_timestamps'),
    nowSec: fc.integer({ min: -3, max: 10 }),
  }),
);

function batchesOf(rows: LogRow[], order: number[], cuts: number[]): LogRow[][] {
  const permuted = order.map((i) => rows[i]!);
  const points = [...new Set([0, ...cuts, permuted.length])].sort((a, b) => a - b);
  const out: LogRow[][] = [];
  for (let i = 0; i + 1 < points.length; i++) out.push(permuted.slice(points[i], points[i + 1]));
  return out;
}

const BASE = Date.UTC(2026, 0, 1, 10, 0, 0);

describe('the rules against the devices, any arrival order', () => {
  it('incremental delivery in any order and batching gives every view the devices hold, with its author', () => {
    fc.assert(
      fc.property(deliveryArb, ({ specs, order, cuts, meta }) => {
        const rows = toRows(specs, BASE);
        const expected = new Map([...oracleViews(rows, meta)].map(([k, v]) => [k, { record: v.record, author: v.author }]));
        expect(records(incremental(batchesOf(rows, order, cuts), meta))).toEqual(expected);
      }),
      { numRuns: 4000 },
    );
  });

  it('applying the same rows twice changes nothing (idempotent)', () => {
    fc.assert(
      fc.property(deliveryArb, ({ specs, order, cuts, meta }) => {
        const rows = toRows(specs, BASE);
        const batches = batchesOf(rows, order, cuts);
        const expected = new Map([...oracleViews(rows, meta)].map(([k, v]) => [k, { record: v.record, author: v.author }]));
        expect(records(incremental([...batches, ...batches], meta))).toEqual(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it('a view is due exactly when the runner on its author’s device would run it', () => {
    let due = 0;
    fc.assert(
      fc.property(deliveryArb, ({ specs, order, cuts, meta, nowSec }) => {
        const rows = toRows(specs, BASE);
        const now = new Date(BASE + nowSec * 1000 + 250).toISOString();
        const nowCanonical = `${now.slice(0, 23)}000Z`;
        const oracle = oracleViews(rows, meta);
        for (const [k, s] of incremental(batchesOf(rows, order, cuts), meta)) {
          const d = derivedColumns(s);
          const isDue = s.firstPos !== null && !d.soft_deleted && d.state === 'active' && d.next_run_at !== null && d.next_run_at <= nowCanonical && d.listed && d.author === s.userId;
          const view = oracle.get(k);
          expect(isDue, k).toBe(view ? runnerWouldRun(view, s.userId, now) : false);
          if (isDue) due++;
        }
      }),
      { numRuns: 2000 },
    );
    // The property must not hold vacuously.
    expect(due).toBeGreaterThan(100);
  });
});
