/**
 * The rules of docs/contract.md §1, one by one, on the pure functions
 * (wire.ts decodes, lww.ts applies). Every case is checked three ways: the
 * devices' sequential model (oracle.ts), lww.ts in replay order, and lww.ts
 * fed in reverse arrival order (late commits) with the rebuild it may ask for.
 */
import { describe, expect, it } from 'vitest';
import { applyChange, emptyState, materialize, replay } from '../../src/projection/lww.js';
import { decodeRow, MAX_DATA_DEPTH, type Change } from '../../src/projection/wire.js';
import { replayView, viewOf, type LogRow } from './oracle.js';
import { toChangeRow } from './history.js';
import { rowMaker } from './log-db.js';

const U = 'u1';
const M = 'm1';
const T = 'aiMissions';

const t = (sec: number, ms = 0) => new Date(Date.UTC(2026, 0, 1, 10, 0, sec, ms)).toISOString();
/** created_at in the projection's fixed-width form. */
const c = (sec: number, ms = 0) => `${t(sec, ms).slice(0, 23)}000Z`;
const row = rowMaker(() => ({ userId: U, recordId: M }));

type Meta = 'field_meta' | 'field_timestamps';

function changesOf(rows: LogRow[], meta: Meta): Change[] {
  return rows.flatMap((r) => {
    const d = decodeRow(toChangeRow(r, meta));
    return d.ok && d.change ? [d.change] : [];
  });
}

/** lww.ts fed in the given arrival order, rebuilding from all rows when it asks to. */
function arrive(rows: LogRow[], meta: Meta): Record<string, unknown> | null {
  let state = emptyState(T, U, M);
  for (const ch of changesOf(rows, meta)) {
    if (applyChange(state, ch) === 'rebuild') state = replay(T, U, M, changesOf(rows, meta));
  }
  return materialize(state);
}

/** u1's record after the rows (its view), asserted equal across the model, replay order and reverse arrival. */
function project(rows: LogRow[], meta: Meta = 'field_meta'): Record<string, unknown> | null {
  const view = viewOf(rows, T, U, M);
  const devices = replayView(view, M, meta)?.record ?? null;
  expect(materialize(replay(T, U, M, changesOf(view, meta)))).toEqual(devices);
  expect(arrive([...view].reverse(), meta)).toEqual(devices);
  expect(arrive(view, meta)).toEqual(devices);
  return devices;
}

describe('an insert', () => {
  it('of an absent record is the record: its data, with id the record id (id, __fieldMeta, _updatedAtIndex are not fields)', () => {
    const rec = project([row({ op: 'insert', createdAt: c(1), data: { id: 'other', title: 'a', __fieldMeta: { x: 1 }, _updatedAtIndex: 'z', state: 'active' } })]);
    expect(rec).toEqual({ id: M, title: 'a', state: 'active' });
  });

  it('stamps every field with data.updatedAt, else data.createdAt, else the row’s created_at: a device clock 5 minutes fast wins over a later pause', () => {
    const fast = t(300);
    const rec = project([
      row({ op: 'insert', createdAt: c(1), data: { state: 'active', updatedAt: fast } }),
      row({ op: 'update', createdAt: c(60), data: { state: 'paused' }, fieldMeta: { state: t(60) } }),
    ]);
    expect(rec).toMatchObject({ state: 'active' });
    expect(project([row({ op: 'insert', createdAt: c(1), data: { state: 'active', createdAt: fast } }), row({ op: 'update', createdAt: c(60), data: { state: 'paused' }, fieldMeta: { state: t(60) } })])).toMatchObject({ state: 'active' });
    // Neither: the device's clock when it applies the row, taken as its created_at.
    expect(project([row({ op: 'insert', createdAt: c(1), data: { state: 'active' } }), row({ op: 'update', createdAt: c(60), data: { state: 'paused' }, fieldMeta: { state: t(0) } })])).toMatchObject({ state: 'active' });
    expect(project([row({ op: 'insert', createdAt: c(1), data: { state: 'active' } }), row({ op: 'update', createdAt: c(60), data: { state: 'paused' }, fieldMeta: { state: t(1) } })])).toMatchObject({ state: 'paused' });
  });

  it('ignores its field_meta (inserts carry none; the stamp is the record’s own)', () => {
    const rec = project([
      row({ op: 'insert', createdAt: c(1), data: { title: 'a', updatedAt: t(10) }, fieldMeta: { title: t(99) } }),
      row({ op: 'update', createdAt: c(2), data: { title: 'b' }, fieldMeta: { title: t(20) } }),
    ]);
    expect(rec).toMatchObject({ title: 'b' });
  });

  it('without data makes the record of the change envelope itself, as the webapp falls back to it', () => {
    const rec = project([row({ id: '00000000-0000-4000-8000-0000000000e1', op: 'insert', createdAt: c(1), data: {}, spaceId: 'space-1', actor: { kind: 'user' }, origin: 'user', schemaVersion: 2 })]);
    expect(rec).toEqual({ id: M, eventId: '00000000-0000-4000-8000-0000000000e1', schemaVersion: 2, table: T, op: 'insert', spaceId: 'space-1', actor: { kind: 'user' }, origin: 'user' });
    expect(project([row({ op: 'insert', createdAt: c(1), data: null })])).toMatchObject({ op: 'insert', table: T });
  });

  it('into a present record takes each field whose stamp is at least the stored one', () => {
    const rec = project([
      row({ op: 'insert', createdAt: c(1), data: { title: 'a', state: 'active', updatedAt: t(5) } }),
      row({ op: 'update', createdAt: c(2), data: { title: 'b' }, fieldMeta: { title: t(9) } }),
      row({ op: 'insert', createdAt: c(3), data: { title: 'c', state: 'paused', objective: 'o', updatedAt: t(5) } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'b', state: 'paused', objective: 'o', updatedAt: t(5) });
  });
});

describe('an update', () => {
  it('counts only fields with both a field_meta string and a data key; none: the row does nothing', () => {
    expect(project([row({ op: 'update', createdAt: c(1), data: { title: 'a' }, fieldMeta: { state: t(1) } })])).toBeNull();
    const rec = project([
      row({ op: 'insert', createdAt: c(1), data: { title: 'a', state: 'active' } }),
      row({ op: 'update', createdAt: c(2), data: { title: 'b', state: 'paused' }, fieldMeta: { title: t(2) } }),
    ]);
    expect(rec).toMatchObject({ title: 'b', state: 'active' });
  });

  it('with stamps only in field_timestamps does nothing where the table has field_meta, and counts them where it has not', () => {
    const rows = [
      row({ op: 'insert', createdAt: c(1), data: { state: 'active' } }),
      row({ op: 'update', createdAt: c(2), data: { state: 'paused' }, fieldTimestamps: { state: t(2) } }),
    ];
    expect(project(rows, 'field_meta')).toMatchObject({ state: 'active' });
    expect(project(rows, 'field_timestamps')).toMatchObject({ state: 'paused' });
  });

  it('reads a null metadata entry as the empty stamp: it loses to any stored field', () => {
    const rec = project([
      row({ op: 'insert', createdAt: c(1), data: { title: 'a' } }),
      row({ op: 'update', createdAt: c(2), data: { title: 'b', objective: 'new' }, fieldMeta: { title: null, objective: null } }),
    ]);
    expect(rec).toEqual({ id: M, title: 'a', objective: 'new' });
  });

  it('of an absent record rebuilds it from its own fields alone', () => {
    expect(project([row({ op: 'update', createdAt: c(1), data: { title: 'a', state: 'paused' }, fieldMeta: { title: t(1), state: t(1) } })])).toEqual({ id: M, title: 'a', state: 'paused' });
  });
});

describe('a delete', () => {
  const ins = (sec: number) => row({ op: 'insert', createdAt: c(sec), data: { title: 'a', state: 'active', nextRunAt: t(100) } });

  it('with a deletedAt string soft-deletes: the record stays, carrying it', () => {
    expect(project([ins(1), row({ op: 'delete', createdAt: c(2), data: { deletedAt: t(2) } })])).toMatchObject({ title: 'a', deletedAt: t(2) });
  });

  it('soft: an older update arriving later (an offline device) leaves it deleted', () => {
    const rec = project([ins(1), row({ op: 'delete', createdAt: c(3), data: { deletedAt: t(3) } }), row({ op: 'update', createdAt: c(4), data: { state: 'paused' }, fieldMeta: { state: t(2) } })]);
    expect(rec).toMatchObject({ deletedAt: t(3), state: 'paused' });
  });

  it('soft: a later insert of the same id keeps deletedAt; an update of deletedAt with a newer stamp clears it', () => {
    expect(project([ins(1), row({ op: 'delete', createdAt: c(2), data: { deletedAt: t(2) } }), ins(3)])).toMatchObject({ deletedAt: t(2) });
    const undeleted = project([ins(1), row({ op: 'delete', createdAt: c(2), data: { deletedAt: t(2) } }), row({ op: 'update', createdAt: c(3), data: { deletedAt: null }, fieldMeta: { deletedAt: t(3) } })]);
    expect(undeleted).toMatchObject({ deletedAt: null });
  });

  it('soft: of an absent record does nothing, even when the record appears after it', () => {
    expect(project([row({ op: 'delete', createdAt: c(1), data: { deletedAt: t(1) } })])).toBeNull();
    expect(project([row({ op: 'delete', createdAt: c(1), data: { deletedAt: t(1) } }), ins(2)])).not.toHaveProperty('deletedAt');
  });

  it('soft: deletedAt is last-write-wins on its own stamp', () => {
    expect(project([ins(1), row({ op: 'delete', createdAt: c(2), data: { deletedAt: t(9) } }), row({ op: 'delete', createdAt: c(3), data: { deletedAt: t(5) } })])).toMatchObject({ deletedAt: t(9) });
  });

  it('without a deletedAt string (none, empty, a number) removes the record; a later update rebuilds it from its fields alone', () => {
    for (const data of [null, {}, { deletedAt: '' }, { deletedAt: 5 }]) {
      expect(project([ins(1), row({ op: 'delete', createdAt: c(2), data })])).toBeNull();
      const rec = project([ins(1), row({ op: 'delete', createdAt: c(2), data }), row({ op: 'update', createdAt: c(3), data: { state: 'paused' }, fieldMeta: { state: t(0) } })]);
      expect(rec).toEqual({ id: M, state: 'paused' });
    }
  });

  it('a late hard delete (before rows already applied) asks for a rebuild', () => {
    const [a, del, upd] = [ins(1), row({ op: 'delete', createdAt: c(2), data: {} }), row({ op: 'update', createdAt: c(3), data: { state: 'paused' }, fieldMeta: { state: t(3) } })];
    const state = emptyState(T, U, M);
    for (const ch of changesOf([a!, upd!], 'field_meta')) expect(applyChange(state, ch)).toBe('applied');
    expect(applyChange(state, changesOf([del!], 'field_meta')[0]!)).toBe('rebuild');
  });
});

describe('stamps', () => {
  it('compare as strings: "…:00Z" beats "…:00.500Z"', () => {
    const rec = project([
      row({ op: 'insert', createdAt: c(1), data: { title: 'a', updatedAt: t(0, 500) } }),
      row({ op: 'update', createdAt: c(2), data: { title: 'b' }, fieldMeta: { title: t(0).replace('.000Z', 'Z') } }),
      row({ op: 'update', createdAt: c(3), data: { title: 'c' }, fieldMeta: { title: t(0, 500) } }),
    ]);
    expect(rec).toMatchObject({ title: 'b' });
  });

  it('an insert’s numeric updatedAt compares as JavaScript does: an ISO string is never at least it, nor it at least one, nor "" when negative', () => {
    expect(project([row({ op: 'insert', createdAt: c(1), data: { title: 'a', updatedAt: 5 } }), row({ op: 'update', createdAt: c(2), data: { title: 'b' }, fieldMeta: { title: t(2) } })])).toMatchObject({ title: 'a' });
    expect(project([row({ op: 'insert', createdAt: c(1), data: { title: 'a' } }), row({ op: 'insert', createdAt: c(2), data: { title: 'b', objective: 'o', updatedAt: 7 } })])).toEqual({ id: M, title: 'a', objective: 'o', updatedAt: 7 });
    expect(project([row({ op: 'update', createdAt: c(1), data: { title: 'a' }, fieldMeta: { title: '' } }), row({ op: 'insert', createdAt: c(2), data: { objective: 'o', updatedAt: -1 } })])).toEqual({ id: M, title: 'a' });
  });

  it('stamps that are not plain (astral or control characters, numbers) merge in replay order, late ones by a rebuild', () => {
    const rows = [
      row({ op: 'insert', createdAt: c(1), data: { title: 'a', updatedAt: '\u{1F600}' } }),
      row({ op: 'update', createdAt: c(2), data: { title: 'b' }, fieldMeta: { title: '\uE000' } }),
      row({ op: 'update', createdAt: c(3), data: { title: 'c' }, fieldMeta: { title: 'a\u0001' } }),
    ];
    // JavaScript compares UTF-16 units: U+E000 is above the surrogate that starts the emoji.
    expect(project(rows)).toMatchObject({ title: 'b' });
    const state = emptyState(T, U, M);
    const [first, second, third] = changesOf(rows, 'field_meta');
    expect(applyChange(state, third!)).toBe('applied');
    expect(applyChange(state, first!)).toBe('rebuild');
    expect(applyChange(emptyState(T, U, M), second!)).toBe('applied');
  });
});

describe('rows a device never applies are skipped', () => {
  it.each<[string, Partial<LogRow>]>([
    ['data not an object (the pull fails)', { data: [1] }],
    ['a metadata value that is not a string (the pull fails)', { fieldMeta: { title: { at: t(1) } } }],
    ['an actor that is not an object (the device drops it)', { actor: 'user' }],
    ['an empty record id (the device drops it)', { recordId: '' }],
    ['an unknown op', { op: 'merge' }],
    ['an insert stamp that cannot become a primitive', { op: 'insert', data: { title: 'x', updatedAt: { toString: 1 } } }],
  ])('%s', (_name, p) => {
    const d = decodeRow(toChangeRow(row({ op: 'update', createdAt: c(1), data: { title: 'x' }, fieldMeta: { title: t(1) }, ...p })));
    expect(d.ok).toBe(false);
  });

  it('a value that cannot be stored as read: a number beyond the double range, nesting deeper than MAX_DATA_DEPTH', () => {
    let deep: unknown = 'bottom';
    for (let i = 0; i < MAX_DATA_DEPTH + 1; i++) deep = [deep];
    for (const data of [{ title: Infinity }, { title: deep }]) {
      expect(decodeRow(toChangeRow(row({ op: 'insert', createdAt: c(1), data }))).ok).toBe(false);
    }
  });

  it('the same rows with odd but readable values are applied: unparsable stamps are strings like any other', () => {
    const d = decodeRow(toChangeRow(row({ op: 'update', createdAt: c(1), data: { title: 'x' }, fieldMeta: { title: 'yesterday' } })));
    expect(d.ok && d.change?.kind).toBe('data');
  });
});

describe('views of a record shared in a space', () => {
  const member = (p: Partial<LogRow>) => row({ userId: 'u2', ...p });

  it('another member’s rows join the view when they carry a real space the viewer stamped on the record itself', () => {
    const rows = [
      row({ op: 'insert', createdAt: c(1), data: { title: 'a', state: 'active', spaceId: 'space-1' }, spaceId: 'space-1' }),
      member({ op: 'update', createdAt: c(2), data: { title: 'by u2' }, fieldMeta: { title: t(2) }, spaceId: 'space-1' }),
    ];
    expect(project(rows)).toMatchObject({ title: 'by u2' });
  });

  it('sentinel, null and unstamped spaces keep another user’s rows out (a stranger who knows the id cannot write in)', () => {
    for (const spaceId of [null, '_personal:u1', 'space-2']) {
      const rows = [
        row({ op: 'insert', createdAt: c(1), data: { title: 'a' }, spaceId: spaceId === 'space-2' ? 'space-1' : spaceId }),
        member({ op: 'update', createdAt: c(2), data: { title: 'by a stranger' }, fieldMeta: { title: t(2) }, spaceId }),
      ];
      expect(project(rows)).toMatchObject({ title: 'a' });
    }
  });
});

describe('idempotence', () => {
  it('applying a change twice changes nothing', () => {
    const rows = [
      row({ op: 'insert', createdAt: c(1), data: { title: 'a', state: 'active' } }),
      row({ op: 'delete', createdAt: c(2), data: { deletedAt: t(2) } }),
      row({ op: 'update', createdAt: c(3), data: { title: 'b' }, fieldMeta: { title: t(3) } }),
    ];
    const once = replay(T, U, M, changesOf(rows, 'field_meta'));
    const twice = replay(T, U, M, changesOf(rows, 'field_meta'));
    for (const ch of changesOf(rows, 'field_meta')) applyChange(twice, ch);
    expect(materialize(twice)).toEqual(materialize(once));
  });
});
