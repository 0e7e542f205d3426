/**
 * The LWW rules of docs/contract.md §1, one by one, on the pure functions of
 * src/projection/lww.ts. Every case is checked three ways: the contract's
 * literal replay (oracle.ts), lww.ts in replay order, and lww.ts fed in
 * reverse arrival order (late commits) with the rebuild it may ask for.
 */
import { describe, expect, it } from 'vitest';
import {
  applyChange,
  emptyState,
  materialize,
  MAX_DATA_DEPTH,
  normalizeRow,
  replay,
  type Change,
  type ChangeRow,
} from '../../src/projection/lww.js';
import { oracleReplay } from './oracle.js';

const U = 'u1';
const M = 'm1';
let seq = 0;

/** A row of mission m1; ids increase with each call unless given. */
function row(p: Partial<ChangeRow> & { createdAt: string }): ChangeRow {
  seq++;
  return {
    id: p.id ?? `00000000-0000-4000-8000-${seq.toString(16).padStart(12, '0')}`,
    userId: U,
    recordId: M,
    op: 'update',
    data: {},
    fieldTimestamps: {},
    fieldMeta: {},
    ...p,
  };
}

const t = (sec: number, ms = 0) => new Date(Date.UTC(2026, 0, 1, 10, 0, sec, ms)).toISOString();

function changesOf(rows: ChangeRow[]): Change[] {
  return rows.flatMap((r) => {
    const n = normalizeRow(r);
    return n.ok ? [n.change] : [];
  });
}

/** lww.ts fed in the given arrival order, rebuilding from all rows when it asks to. */
function arrive(rows: ChangeRow[]): Record<string, unknown> | null {
  let state = emptyState(U, M);
  for (const c of changesOf(rows)) {
    if (applyChange(state, c) === 'rebuild') state = replay(U, M, changesOf(rows));
  }
  return materialize(state);
}

/** The record after the rows, asserted equal across the oracle, replay order and reverse arrival. */
function project(rows: ChangeRow[]): Record<string, unknown> | null {
  const oracle = oracleReplay(rows).get(`${U}\u0000${M}`) ?? null;
  expect(materialize(replay(U, M, changesOf(rows)))).toEqual(oracle);
  expect(arrive([...rows].reverse())).toEqual(oracle);
  expect(arrive(rows)).toEqual(oracle);
  return oracle;
}

describe('LWW rules (docs/contract.md §1)', () => {
  it('a delete removes the record', () => {
    expect(project([row({ op: 'insert', createdAt: t(1), data: { title: 'a' } }), row({ op: 'delete', createdAt: t(2), data: null })])).toBeNull();
  });

  it('a delete with data still removes (data of a delete is ignored)', () => {
    expect(project([row({ op: 'insert', createdAt: t(1), data: { title: 'a' } }), row({ op: 'delete', createdAt: t(2), data: { title: 'z' } })])).toBeNull();
  });

  it('a delete of a record that never existed leaves nothing', () => {
    expect(project([row({ op: 'delete', createdAt: t(1), data: null })])).toBeNull();
  });

  it('after a delete, a later row re-creates the record from its own data alone', () => {
    const rec = project([
      row({ op: 'insert', createdAt: t(1), data: { title: 'old', state: 'active', nextRunAt: t(100) } }),
      row({ op: 'delete', createdAt: t(2), data: null }),
      row({ op: 'update', createdAt: t(3), data: { title: 'new' } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'new' });
  });

  it('a re-create wins even when its field stamps are older than the deleted ones', () => {
    const rec = project([
      row({ op: 'insert', createdAt: t(1), data: { title: 'old' }, fieldMeta: { title: t(50) } }),
      row({ op: 'delete', createdAt: t(2), data: null }),
      row({ op: 'insert', createdAt: t(3), data: { title: 'new' }, fieldMeta: { title: t(0) } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'new' });
  });

  it('a row before the delete (in replay order) contributes nothing, whenever it arrives', () => {
    const rec = project([
      row({ op: 'update', createdAt: t(1), data: { objective: 'gone' }, fieldMeta: { objective: t(99) } }),
      row({ op: 'delete', createdAt: t(2), data: null }),
      row({ op: 'insert', createdAt: t(3), data: { title: 'x' } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'x' });
  });

  it('a late delete (earlier created_at than rows already applied) asks for a rebuild', () => {
    const ins = row({ op: 'insert', createdAt: t(1), data: { title: 'a' } });
    const del = row({ op: 'delete', createdAt: t(2), data: null });
    const upd = row({ op: 'update', createdAt: t(3), data: { state: 'active' } });
    const state = emptyState(U, M);
    for (const c of changesOf([ins, upd])) expect(applyChange(state, c)).toBe('applied');
    expect(applyChange(state, changesOf([del])[0]!)).toBe('rebuild');
    expect(materialize(replay(U, M, changesOf([ins, upd, del])))).toEqual({ id: M, state: 'active' });
  });

  it('the first row with data creates { id: record_id, ...data }', () => {
    expect(project([row({ op: 'update', createdAt: t(1), data: { title: 'a', state: 'paused' } })])).toEqual({ id: M, title: 'a', state: 'paused' });
  });

  it('an insert with empty data creates { id } alone', () => {
    expect(project([row({ op: 'insert', createdAt: t(1), data: {} })])).toEqual({ id: M });
  });

  it('the first row creates the record even when its stamps are older than nothing', () => {
    expect(project([row({ op: 'insert', createdAt: t(5), data: { title: 'a' }, fieldMeta: { title: '1999-01-01T00:00:00Z' } })])).toEqual({ id: M, title: 'a' });
  });

  it('a field wins when its timestamp is greater than the stored one', () => {
    const rec = project([
      row({ op: 'insert', createdAt: t(1), data: { title: 'a', state: 'active' }, fieldMeta: { title: t(1), state: t(1) } }),
      row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldMeta: { title: t(2) } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'b', state: 'active' });
  });

  it('a field wins when its timestamp equals the stored one (>=)', () => {
    const rec = project([
      row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: t(5) } }),
      row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldMeta: { title: t(5) } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'b' });
  });

  it('a later row loses a field whose timestamp is older than the stored one, and wins the others', () => {
    const rec = project([
      row({ op: 'insert', createdAt: t(1), data: { title: 'a', state: 'active' }, fieldMeta: { title: t(9) } }),
      row({ op: 'update', createdAt: t(2), data: { title: 'b', state: 'paused' }, fieldMeta: { title: t(3) } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'a', state: 'paused' });
  });

  it('a field with no entry takes the row created_at as its timestamp', () => {
    // Stored stamp of title: t(4) from field_meta. The later row has no entry:
    // its stamp is its created_at t(3) < t(4), so it loses; at t(4) it wins.
    const base = row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: t(4) } });
    expect(project([base, row({ op: 'update', createdAt: t(3), data: { title: 'b' } })])).toEqual({ id: M, title: 'a' });
    expect(project([base, row({ op: 'update', createdAt: t(4), data: { title: 'c' } })])).toEqual({ id: M, title: 'c' });
  });

  it('each field of one row keeps its own stamp when entries repeat around a field without one', () => {
    // a and c share one entry text (parsed once), b between them has none (created_at t(2)).
    const base = row({ op: 'insert', createdAt: t(1), data: { a: 0, b: 0, c: 0 }, fieldMeta: { a: t(5), b: t(5), c: t(5) } });
    const mixed = row({ op: 'update', createdAt: t(2), data: { a: 1, b: 1, c: 1 }, fieldMeta: { a: { at: t(6) }, c: { at: t(6) } } });
    expect(project([base, mixed])).toEqual({ id: M, a: 1, b: 0, c: 1 });
    const n = normalizeRow(mixed);
    expect(n.ok && n.change.kind === 'data' && n.change.fields.map(([k, , stamp]) => [k, stamp.split('|')[0]])).toEqual([
      ['a', t(6).replace('Z', '000Z')],
      ['b', t(2).replace('Z', '000Z')],
      ['c', t(6).replace('Z', '000Z')],
    ]);
  });

  it('an entry for another field does not stamp this one', () => {
    const rec = project([
      row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: t(4) } }),
      row({ op: 'update', createdAt: t(3), data: { title: 'b' }, fieldMeta: { state: t(9) } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'a' });
  });

  it('field_meta is read before field_timestamps', () => {
    const base = row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: t(5) } });
    // meta says older (loses) although field_timestamps says newer.
    expect(project([base, row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldMeta: { title: t(4) }, fieldTimestamps: { title: t(9) } })])).toEqual({ id: M, title: 'a' });
    // meta says newer (wins) although field_timestamps says older.
    expect(project([base, row({ op: 'update', createdAt: t(2), data: { title: 'c' }, fieldMeta: { title: t(6) }, fieldTimestamps: { title: t(0) } })])).toEqual({ id: M, title: 'c' });
  });

  it('field_timestamps is used when field_meta has no entry for the field (or is null)', () => {
    const base = row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldTimestamps: { title: t(5) } });
    expect(project([base, row({ op: 'update', createdAt: t(6), data: { title: 'b' }, fieldMeta: { state: t(9) }, fieldTimestamps: { title: t(4) } })])).toEqual({ id: M, title: 'a' });
    expect(project([base, row({ op: 'update', createdAt: t(6), data: { title: 'c' }, fieldMeta: null, fieldTimestamps: { title: t(5) } })])).toEqual({ id: M, title: 'c' });
    expect(project([base, row({ op: 'update', createdAt: t(6), data: { title: 'd' }, fieldMeta: { title: null }, fieldTimestamps: { title: t(4) } })])).toEqual({ id: M, title: 'a' });
  });

  it('an {at, actor, origin} entry uses its at', () => {
    const rec = project([
      row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: { at: t(5), actor: { kind: 'user' }, origin: 'user' } } }),
      row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldMeta: { title: { at: t(4), actor: { kind: 'ai' }, origin: 'agent' } } }),
      row({ op: 'update', createdAt: t(3), data: { state: 'active' }, fieldMeta: { state: { at: t(0), origin: 'system' } } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'a', state: 'active' });
  });

  it('string and {at} entries of the same instant compare equal (tie → replay order)', () => {
    const rec = project([
      row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: { at: t(5) } } }),
      row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldTimestamps: { title: t(5) } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'b' });
  });

  describe('instants are compared as instants, never as strings', () => {
    it('"…10:00:00Z" equals "…10:00:00.000Z": the later row in replay order wins', () => {
      // As strings "10:00:00Z" > "10:00:00.000Z"; as instants they tie.
      const rec = project([
        row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: '2026-01-01T10:00:00Z' } }),
        row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldMeta: { title: '2026-01-01T10:00:00.000Z' } }),
      ]);
      expect(rec).toEqual({ id: M, title: 'b' });
    });

    it('"+02:00" spelling equals the same instant in Z', () => {
      // As strings "12:00:00+02:00" > "10:00:00.000Z"; as instants they tie.
      const rec = project([
        row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: '2026-01-01T12:00:00+02:00' } }),
        row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldMeta: { title: '2026-01-01T10:00:00.000Z' } }),
      ]);
      expect(rec).toEqual({ id: M, title: 'b' });
    });

    it('an offset spelling that sorts first as a string can be the later instant', () => {
      // "2026-01-01T09:30:00-01:00" is 10:30Z: later than 10:00Z although it sorts before it.
      const rec = project([
        row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: '2026-01-01T09:30:00-01:00' } }),
        row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldMeta: { title: '2026-01-01T10:00:00Z' } }),
      ]);
      expect(rec).toEqual({ id: M, title: 'a' });
    });

    it('a microsecond is later than the whole second', () => {
      const rec = project([
        row({ op: 'insert', createdAt: t(1), data: { title: 'a' }, fieldMeta: { title: '2026-01-01T10:00:00.000001Z' } }),
        row({ op: 'update', createdAt: t(2), data: { title: 'b' }, fieldMeta: { title: '2026-01-01T10:00:00Z' } }),
      ]);
      expect(rec).toEqual({ id: M, title: 'a' });
    });

    it('created_at spellings are instants too (replay order)', () => {
      // Same instant spelled two ways: the tie on created_at falls to id.
      const a = row({ id: '00000000-0000-4000-8000-00000000000b', op: 'insert', createdAt: '2026-01-01T12:00:00+02:00', data: { title: 'a' } });
      const b = row({ id: '00000000-0000-4000-8000-00000000000a', op: 'update', createdAt: '2026-01-01T10:00:00.000000Z', data: { title: 'b' } });
      expect(project([a, b])).toEqual({ id: M, title: 'a' });
    });
  });

  describe('ties fall to replay order: created_at, then id', () => {
    it('equal field timestamps: the later created_at wins', () => {
      const rec = project([
        row({ op: 'update', createdAt: t(2), data: { title: 'late' }, fieldMeta: { title: t(9) } }),
        row({ op: 'insert', createdAt: t(1), data: { title: 'early' }, fieldMeta: { title: t(9) } }),
      ]);
      expect(rec).toEqual({ id: M, title: 'late' });
    });

    it('equal field timestamps and created_at: the greater id wins', () => {
      const hi = row({ id: 'ffffffff-0000-4000-8000-000000000000', op: 'update', createdAt: t(1), data: { title: 'hi' } });
      const lo = row({ id: '00000000-0000-4000-8000-000000000000', op: 'update', createdAt: t(1), data: { title: 'lo' } });
      expect(project([hi, lo])).toEqual({ id: M, title: 'hi' });
      expect(project([lo, hi])).toEqual({ id: M, title: 'hi' });
    });

    it('a delete and an update at the same created_at: id decides which comes last', () => {
      const del = row({ id: '00000000-0000-4000-8000-0000000000d0', op: 'delete', createdAt: t(2), data: null });
      const updAfter = row({ id: '00000000-0000-4000-8000-0000000000e0', op: 'update', createdAt: t(2), data: { title: 'after' } });
      const updBefore = row({ id: '00000000-0000-4000-8000-0000000000c0', op: 'update', createdAt: t(2), data: { title: 'before' } });
      const ins = row({ op: 'insert', createdAt: t(1), data: { title: 'a', state: 'active' } });
      expect(project([ins, del, updAfter])).toEqual({ id: M, title: 'after' });
      expect(project([ins, del, updBefore])).toBeNull();
    });
  });

  describe('soft delete', () => {
    it('deletedAt is an ordinary LWW field: the record stays, carrying it', () => {
      const rec = project([
        row({ op: 'insert', createdAt: t(1), data: { title: 'a', state: 'active' } }),
        row({ op: 'update', createdAt: t(2), data: { deletedAt: t(2) } }),
      ]);
      expect(rec).toEqual({ id: M, title: 'a', state: 'active', deletedAt: t(2) });
    });

    it('a later falsy deletedAt un-deletes; an older one does not', () => {
      const base = [
        row({ op: 'insert', createdAt: t(1), data: { title: 'a' } }),
        row({ op: 'update', createdAt: t(3), data: { deletedAt: t(3) } }),
      ];
      expect(project([...base, row({ op: 'update', createdAt: t(4), data: { deletedAt: null } })])).toEqual({ id: M, title: 'a', deletedAt: null });
      expect(project([...base, row({ op: 'update', createdAt: t(4), data: { deletedAt: null }, fieldMeta: { deletedAt: t(2) } })])).toEqual({
        id: M,
        title: 'a',
        deletedAt: t(3),
      });
    });
  });

  describe('malformed rows are skipped (never thrown)', () => {
    const good = row({ op: 'insert', createdAt: t(1), data: { title: 'a' } });
    const cases: [string, Partial<ChangeRow>][] = [
      ['data null on insert', { op: 'insert', data: null }],
      ['data an array', { data: [{ title: 'x' }] }],
      ['data a string', { data: 'oops' }],
      ['data a number', { data: 42 }],
      ['unknown op', { op: 'upsert', data: { title: 'x' } }],
      ['op not a string', { op: 3, data: { title: 'x' } }],
      ['op in another case', { op: 'UPDATE', data: { title: 'x' } }],
      ['field_meta string unparsable', { data: { title: 'x' }, fieldMeta: { title: 'yesterday' } }],
      ['field_meta {at} unparsable', { data: { title: 'x' }, fieldMeta: { title: { at: 'nope' } } }],
      ['field_meta {at} missing', { data: { title: 'x' }, fieldMeta: { title: { actor: 'a' } } }],
      ['field_meta entry a number', { data: { title: 'x' }, fieldMeta: { title: 1767261600000 } }],
      ['field_timestamps string unparsable', { data: { title: 'x' }, fieldTimestamps: { title: '2026-02-30T00:00:00Z' } }],
      ['field_timestamps {at} unparsable', { data: { title: 'x' }, fieldTimestamps: { title: { at: '2026-01-01T25:00:00Z' } } }],
      ['field_meta not an object', { data: { title: 'x' }, fieldMeta: 'x' }],
      ['field_timestamps an array', { data: { title: 'x' }, fieldTimestamps: [] }],
      ['huge timestamp string', { data: { title: 'x' }, fieldMeta: { title: `2026-01-01T10:00:00.${'1'.repeat(100_000)}Z` } }],
      ['timestamp beyond year 9999', { data: { title: 'x' }, fieldMeta: { title: '+275760-09-13T00:00:00.000Z' } }],
      ['created_at unparsable', { data: { title: 'x' }, createdAt: 'soon' }],
    ];
    for (const [name, patch] of cases) {
      it(name, () => {
        const bad = row({ createdAt: t(2), ...patch });
        const n = normalizeRow(bad);
        expect(n.ok).toBe(false);
        if (!n.ok) expect(n.reason.length).toBeLessThan(300);
        expect(project([good, bad])).toEqual({ id: M, title: 'a' });
      });
    }

    it('a value that cannot be written back as read is skipped: a number beyond the double range, nesting deeper than MAX_DATA_DEPTH', () => {
      // The oracle (the contract's replay) has no notion of these; lww.ts refuses them
      // because 1e400 parses to Infinity (stored as null) and deep nesting breaks JSON.stringify.
      let nested: unknown = 'x';
      for (let i = 0; i < MAX_DATA_DEPTH; i++) nested = { a: nested };
      for (const data of [{ title: Infinity }, { n: [1, { m: -Infinity }] }, { title: NaN }, { title: nested }]) {
        const n = normalizeRow(row({ createdAt: t(2), data }));
        expect(n.ok).toBe(false);
      }
      let shallow: unknown = 'x';
      for (let i = 0; i < MAX_DATA_DEPTH - 1; i++) shallow = [shallow];
      expect(normalizeRow(row({ createdAt: t(2), data: { title: shallow, big: 1.7976931348623157e308 } })).ok).toBe(true);
    });

    it('an unparsable entry for a field the row does not carry is ignored', () => {
      const r = row({ createdAt: t(2), data: { title: 'x' }, fieldMeta: { state: 'garbage' } });
      expect(normalizeRow(r).ok).toBe(true);
    });

    it('a malformed delete (unparsable created_at) is skipped; a delete with odd metadata is not', () => {
      expect(normalizeRow(row({ op: 'delete', createdAt: 'x', data: null })).ok).toBe(false);
      expect(normalizeRow(row({ op: 'delete', createdAt: t(1), data: 'junk', fieldMeta: 'junk' })).ok).toBe(true);
    });
  });

  it('applying a change twice is idempotent', () => {
    const rows = [
      row({ op: 'insert', createdAt: t(1), data: { title: 'a', state: 'active' } }),
      row({ op: 'update', createdAt: t(2), data: { title: 'b' } }),
      row({ op: 'delete', createdAt: t(3), data: null }),
      row({ op: 'insert', createdAt: t(4), data: { title: 'c' } }),
    ];
    const state = emptyState(U, M);
    for (const c of [...changesOf(rows), ...changesOf(rows)]) expect(applyChange(state, c)).not.toBe('rebuild');
    expect(materialize(state)).toEqual({ id: M, title: 'c' });
  });
});
