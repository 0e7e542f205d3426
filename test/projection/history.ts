/**
 * fast-check arbitraries for random mission histories: few users and
 * records so rows collide, inserts/updates/deletes/re-creates, soft deletes,
 * equal timestamps, both metadata shapes (string and {at}), both columns,
 * equivalent instant spellings, and a sprinkle of malformed rows.
 */
import fc from 'fast-check';
import type { ChangeRow } from '../../src/projection/lww.js';

const BASE = Date.UTC(2026, 0, 1, 10, 0, 0);

/** A few spellings of one instant: Z with and without millis, and an offset. */
function spell(ms: number, style: number): string {
  const d = new Date(ms);
  const iso = d.toISOString();
  switch (style % 4) {
    case 0:
      return iso;
    case 1:
      return iso.replace('.000Z', 'Z');
    case 2: {
      const shifted = new Date(ms + 2 * 3600_000).toISOString().slice(0, 23);
      return `${shifted}+02:00`;
    }
    default:
      return `${iso.slice(0, 23)}000Z`;
  }
}

const fieldNames = ['title', 'state', 'nextRunAt', 'objective', 'deletedAt', 'iterations'] as const;

const fieldValue = fc.oneof(
  fc.constantFrom('active', 'paused', 'done', null, '', 'x'),
  fc.integer({ min: 0, max: 5 }),
  fc.constant(new Date(BASE + 60_000).toISOString()),
  fc.array(fc.record({ id: fc.constantFrom('a', 'b', 'c') }), { maxLength: 2 }),
);

export const rowArb = fc
  .record({
    user: fc.constantFrom('u1', 'u2'),
    record: fc.constantFrom('m1', 'm2', 'm3'),
    op: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('insert', 'update') },
      { weight: 1, arbitrary: fc.constant('delete') },
      { weight: 1, arbitrary: fc.constantFrom('upsert', 'merge') },
    ),
    // Small range so created_at and field timestamps often tie.
    createdSec: fc.integer({ min: 0, max: 6 }),
    createdMicros: fc.constantFrom(0, 0, 0, 500),
    fields: fc.uniqueArray(fc.constantFrom(...fieldNames), { maxLength: 4 }),
    values: fc.array(fieldValue, { minLength: 4, maxLength: 4 }),
    stamps: fc.array(
      fc.oneof(
        fc.constant(undefined),
        fc.integer({ min: 0, max: 6 }).map((s) => ({ kind: 'str' as const, s })),
        fc.integer({ min: 0, max: 6 }).map((s) => ({ kind: 'obj' as const, s })),
        fc.constant({ kind: 'bad' as const, s: 0 }),
      ),
      { minLength: 4, maxLength: 4 },
    ),
    column: fc.constantFrom('meta', 'timestamps', 'both'),
    spelling: fc.nat(3),
    dataShape: fc.oneof({ weight: 12, arbitrary: fc.constant('object') }, { weight: 1, arbitrary: fc.constantFrom('null', 'array', 'string') }),
  })
  ;

export type RowSpec = typeof rowArb extends fc.Arbitrary<infer T> ? T : never;

let counter = 0;

/** Turns generated row specs into ChangeRows with unique, unordered ids; baseMs shifts every instant. */
export function toRows(specs: RowSpec[], baseMs = BASE): ChangeRow[] {
  return specs.map((r, i) => {
    counter++;
    const id = `${(counter * 2654435761 % 0xffffffff).toString(16).padStart(8, '0')}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
    const createdMs = baseMs + r.createdSec * 1000;
    const createdAt = `${new Date(createdMs).toISOString().slice(0, 23)}${String(r.createdMicros).padStart(3, '0')}Z`;
    const data: Record<string, unknown> = {};
    const meta: Record<string, unknown> = {};
    const stamps: Record<string, unknown> = {};
    r.fields.forEach((f, j) => {
      data[f] = r.values[j];
      const st = r.stamps[j];
      if (!st) return;
      const spelled = st.kind === 'bad' ? 'not-a-time' : spell(baseMs + st.s * 1000, r.spelling + j);
      const entry = st.kind === 'obj' ? { at: spelled, actor: 'device', origin: 'user' } : spelled;
      if (r.column === 'meta' || r.column === 'both') meta[f] = entry;
      if (r.column === 'timestamps' || (r.column === 'both' && j % 2 === 0)) stamps[f] = spelled === 'not-a-time' ? spelled : spell(baseMs + ((st.s + 3) % 7) * 1000, j);
    });
    const shaped = r.op === 'delete' ? null : r.dataShape === 'object' ? data : r.dataShape === 'null' ? null : r.dataShape === 'array' ? [data] : 'oops';
    return {
      id,
      userId: r.user,
      recordId: r.record,
      op: r.op,
      data: shaped,
      fieldMeta: meta,
      fieldTimestamps: stamps,
      createdAt,
    } satisfies ChangeRow;
  });
}
