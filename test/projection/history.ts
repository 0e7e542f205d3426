/**
 * fast-check arbitraries for random logs of missions and agents: few users
 * and records so rows collide; inserts (whole records, empty ones), updates,
 * soft and hard deletes, re-inserts; stamps near created_at, far from it
 * (skewed device clocks), older than rows already written (offline pushes),
 * missing, only in field_timestamps, odd (`…Z` against `…:00.500Z`, empty,
 * astral, control characters, numbers and objects as an insert's
 * updatedAt); space ids null, sentinel, a user's own, a shared one, and one
 * a stranger copied; actors the device drops; and a sprinkle of rows
 * mana-sync cannot read.
 */
import fc from 'fast-check';
import type { LogRow } from './oracle.js';
import type { ChangeRow } from '../../src/projection/wire.js';

const BASE = Date.UTC(2026, 0, 1, 10, 0, 0);
const iso = (baseMs: number, sec: number, ms = 0) => new Date(baseMs + sec * 1000 + ms).toISOString();

/** A stamp a device might have written, as a function of the log's base instant. */
const stampArb: fc.Arbitrary<(baseMs: number) => unknown> = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: -2, max: 8 }).map((s) => (b: number) => iso(b, s)) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 6 }).map((s) => (b: number) => iso(b, s).replace('.000Z', 'Z')) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 6 }).map((s) => (b: number) => iso(b, s, 500)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 6 }).map((s) => (b: number) => `${iso(b, s + 7200).slice(0, 19)}+02:00`) },
  // A skewed clock: hours or a year off.
  { weight: 2, arbitrary: fc.constantFrom(-400 * 86400, -3600, 3600, 300 * 86400).map((s) => (b: number) => iso(b, s)) },
  { weight: 1, arbitrary: fc.constantFrom('', 'not-a-time', '\u{1F600}', '\uE000x', 'a\u0001b', '9999-12-31T23:59:59.999Z!').map((v) => () => v) },
);

/** An insert's updatedAt/createdAt: mostly a stamp, sometimes what a device should never write. */
const insertStampArb: fc.Arbitrary<(baseMs: number) => unknown> = fc.oneof(
  { weight: 12, arbitrary: stampArb },
  { weight: 2, arbitrary: fc.constantFrom<unknown>(null, -3, 0, 4, 1.5, true, [], ['x'], {}, { toString: 1 }).map((v) => () => v) },
);

const FIELDS = ['title', 'state', 'nextRunAt', 'deletedAt', 'createdAt', 'updatedAt', 'authorId', 'spaceId', 'iterations', 'id', '__fieldMeta', '_updatedAtIndex'] as const;
type FieldName = (typeof FIELDS)[number];

function valueArb(field: FieldName): fc.Arbitrary<(baseMs: number) => unknown> {
  const k = <T,>(a: fc.Arbitrary<T>) => a.map((v) => () => v as unknown);
  switch (field) {
    case 'state':
      return k(fc.constantFrom('active', 'active', 'paused', 'archived', null, 3));
    case 'nextRunAt':
      return fc.oneof({ weight: 5, arbitrary: stampArb }, { weight: 1, arbitrary: k(fc.constantFrom(null, 12, '')) });
    case 'deletedAt':
      return fc.oneof({ weight: 1, arbitrary: stampArb }, { weight: 2, arbitrary: k(fc.constantFrom(null, '', 0, false)) });
    case 'createdAt':
    case 'updatedAt':
      return insertStampArb;
    case 'authorId':
      return k(fc.constantFrom('u1', 'u2', 'u3', '', null, 7));
    case 'spaceId':
      return k(fc.constantFrom('S1', 'P-u1', '_personal:u1', null));
    case 'iterations':
      return k(fc.array(fc.record({ id: fc.constantFrom('a', 'b') }), { maxLength: 2 }));
    default:
      return k(fc.oneof(fc.constantFrom('x', 'y', '', null), fc.integer({ min: 0, max: 3 })));
  }
}

const fieldWriteArb = fc.constantFrom(...FIELDS).chain((f) =>
  fc.record({
    field: fc.constant(f),
    value: valueArb(f),
    /** The metadata entry: a stamp, JSON null, or none. */
    stamp: fc.oneof({ weight: 8, arbitrary: stampArb.map((s) => ({ s })) }, { weight: 1, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.constant(undefined) }),
  }),
);

export const rowArb = fc.record({
  table: fc.constantFrom('aiMissions', 'aiMissions', 'agents'),
  user: fc.constantFrom('u1', 'u1', 'u2', 'u3'),
  record: fc.constantFrom('r1', 'r2'),
  op: fc.oneof(
    { weight: 10, arbitrary: fc.constant('insert') },
    { weight: 12, arbitrary: fc.constant('update') },
    { weight: 4, arbitrary: fc.constant('delete') },
    { weight: 1, arbitrary: fc.constant('upsert') },
  ),
  // Small range so created_at values and stamps often tie.
  createdSec: fc.integer({ min: 0, max: 6 }),
  createdMicros: fc.constantFrom(0, 0, 0, 500),
  writes: fc.uniqueArray(fieldWriteArb, { maxLength: 4, selector: (w) => w.field }),
  /** Where the metadata goes: the column mana-sync reads (field_meta), the old one, both, neither. */
  column: fc.constantFrom('meta', 'meta', 'meta', 'timestamps', 'both', 'none'),
  dataShape: fc.oneof({ weight: 14, arbitrary: fc.constant('object') }, { weight: 2, arbitrary: fc.constantFrom('empty', 'null') }, { weight: 1, arbitrary: fc.constantFrom('array', 'string') }),
  /** A soft delete's deletedAt (as a stamp), or another value a delete may carry. */
  deletedAt: fc.oneof({ weight: 3, arbitrary: stampArb.map((s) => ({ s })) }, { weight: 2, arbitrary: fc.constantFrom<unknown>(undefined, '', 5, null).map((v) => ({ v })) }),
  space: fc.constantFrom('none', 'none', 'sentinel', 'own', 'own', 'S1', 'S1', 'P-u1', 'empty'),
  actor: fc.oneof({ weight: 20, arbitrary: fc.constantFrom<unknown>(undefined, { kind: 'user' }) }, { weight: 1, arbitrary: fc.constantFrom<unknown>(null, 'user', [1]) }),
  /** An insert of a whole mission (or agent) record, as the webapp creates one; the writes override it. */
  whole: fc.record({
    on: fc.boolean(),
    author: fc.constantFrom('writer', 'writer', 'writer', 'u1', 'none'),
    next: stampArb,
    created: insertStampArb,
  }),
  /** A metadata value mana-sync cannot read. */
  badMeta: fc.oneof({ weight: 20, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

export type RowSpec = typeof rowArb extends fc.Arbitrary<infer T> ? T : never;

let counter = 0;

function spaceOf(space: RowSpec['space'], user: string): string | null {
  switch (space) {
    case 'none':
      return null;
    case 'sentinel':
      return `_personal:${user}`;
    case 'own':
      return `P-${user}`;
    case 'empty':
      return '';
    default:
      return space;
  }
}

/** Turns generated specs into LogRows with unique, unordered ids; baseMs shifts every instant. */
export function toRows(specs: RowSpec[], baseMs = BASE): LogRow[] {
  return specs.map((r, i) => {
    counter++;
    const id = `${((counter * 2654435761) % 0xffffffff).toString(16).padStart(8, '0')}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
    const createdAt = `${new Date(baseMs + r.createdSec * 1000).toISOString().slice(0, 23)}${String(r.createdMicros).padStart(3, '0')}Z`;
    const data: Record<string, unknown> = {};
    if (r.op === 'insert' && r.whole.on) {
      const stamp = r.whole.created(baseMs);
      Object.assign(data, { id: r.record, title: 't', state: 'active', nextRunAt: r.whole.next(baseMs), createdAt: stamp, updatedAt: stamp });
      if (r.whole.author !== 'none') data['authorId'] = r.whole.author === 'writer' ? r.user : r.whole.author;
      const space = spaceOf(r.space, r.user);
      if (space !== null) data['spaceId'] = space;
    }
    const meta: Record<string, unknown> = {};
    const old: Record<string, unknown> = {};
    for (const w of r.writes) {
      data[w.field] = w.value(baseMs);
      if (w.stamp === undefined) continue;
      const entry = w.stamp === null ? null : w.stamp.s(baseMs);
      // Only strings (and JSON null) are metadata mana-sync can read; anything else is what badMeta is for.
      const text = typeof entry === 'string' || entry === null ? entry : String(entry);
      if (r.column === 'meta' || r.column === 'both') meta[w.field] = text;
      if (r.column === 'timestamps' || r.column === 'both') old[w.field] = text;
    }
    if (r.badMeta) meta['title'] = { at: iso(baseMs, 1) };
    let shaped: unknown = r.dataShape === 'object' ? data : r.dataShape === 'empty' ? {} : r.dataShape === 'null' ? null : r.dataShape === 'array' ? [data] : 'oops';
    if (r.op === 'delete' && r.dataShape === 'object') {
      const d = r.deletedAt;
      shaped = 's' in d ? { deletedAt: d.s(baseMs) } : d.v === undefined ? {} : { deletedAt: d.v };
    }
    return {
      id,
      tableName: r.table,
      userId: r.user,
      recordId: r.record,
      op: r.op,
      data: shaped,
      fieldMeta: r.op === 'delete' && !r.badMeta ? {} : meta,
      fieldTimestamps: old,
      createdAt,
      spaceId: spaceOf(r.space, r.user),
      actor: r.actor,
      origin: 'user',
      schemaVersion: 1,
    } satisfies LogRow;
  });
}

/** A LogRow as the projection reads it, with the metadata column mana-sync reads on this deployment. */
export function toChangeRow(row: LogRow, metaColumn: 'field_meta' | 'field_timestamps' = 'field_meta'): ChangeRow {
  return {
    id: row.id,
    tableName: row.tableName,
    userId: row.userId,
    recordId: row.recordId,
    op: row.op,
    data: row.data,
    meta: metaColumn === 'field_meta' ? row.fieldMeta : row.fieldTimestamps,
    createdAt: row.createdAt,
    spaceId: row.spaceId,
    ...(row.actor === undefined ? {} : { actor: row.actor }),
    origin: row.origin,
    schemaVersion: row.schemaVersion,
  };
}
