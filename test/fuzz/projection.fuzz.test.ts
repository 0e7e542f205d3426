/**
 * Hostile sync_changes rows against the real projection (docs/contract.md §1:
 * "malformed rows are skipped and counted, never fatal").
 *
 * fast-check generates batches of rows that mana-sync could have stored —
 * wrong types, huge values, deep nesting, weird keys, odd stamp strings and
 * metadata values that are not strings, unknown ops, non-object data and
 * metadata, both metadata columns, ids of every length and alphabet — each
 * labelled good or malformed by construction: malformed is what mana-sync's
 * read cannot decode, what devices drop, and what our limits refuse
 * (docs/contract.md §1). They go into the real table; after each batch
 * a real `refresh()` must:
 *  - never throw, and finish quickly;
 *  - count every malformed row of the batch, once (the next refresh reads
 *    nothing again) — except a row a later hard delete by its writer makes
 *    irrelevant, which the projection may skip unread;
 *  - still let a later good row through (a canary mission shows up with the
 *    right fields), so one poison row can never stall the projection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pino } from 'pino';
import { createTestDb, type TestDb } from '../support/db.js';
import { createProjection, type Projection } from '../../src/projection/refresh.js';
import { getMission } from '../../src/projection/missions.js';
import { resetProjection } from '../projection/log-db.js';
import { MAX_DATA_DEPTH } from '../../src/projection/wire.js';

let db: TestDb;
let projection: Projection;
let skippedReported = 0;

beforeAll(async () => {
  db = await createTestDb({ acceptRowsManaSyncRefuses: true });
  projection = createProjection({
    sql: db.sql,
    log: pino({ level: 'silent' }),
    batchRows: 100,
    cacheRecords: 1000,
    onMalformed: (n) => (skippedReported += n),
  });
});

afterAll(async () => {
  await db?.drop();
});

interface HostileRow {
  good: boolean;
  why: string;
  userId: string;
  recordId: string;
  op: string;
  /** Raw JSON text (so numbers like 1e400 reach Postgres as written), or SQL NULL. */
  data: string | null;
  fieldTimestamps: string | null;
  fieldMeta: string | null;
  /** A timestamptz literal; default now(). */
  createdAt?: string;
}

/** Postgres text and jsonb cannot hold U+0000; mana-sync could never have stored it. */
const pgSafe = (json: string) => json.replace(/\\u0000/g, '\\u0001');
const text = (v: unknown) => pgSafe(JSON.stringify(v));

const ISO = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString());
const weirdKey = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', ' ', 'a.b', 'a"b', "a'b", 'nextRunAt', 'state', 'iterations', 'id'),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.string({ minLength: 300, maxLength: 2000 }),
);
const anyJson = fc.jsonValue({ maxDepth: 4, stringUnit: 'grapheme' });
const idArb = fc.oneof(
  fc.uuid(),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).map((s) => s.replace(/\u0000/g, '_')),
  fc.constantFrom(' ', '\t', 'ünïcødé-🚀', "o'brien", 'a\\b', 'DROP TABLE sync_changes;--'),
);
/** Ids long enough that a key over both (user, mission) no longer fits a btree entry. */
// Drawn by fast-check (not Math.random), so its seed replays these too.
const longId = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'), minLength: 1400, maxLength: 2500 });

const nested = (depth: number, leaf: string) => `${'{"a":'.repeat(depth)}${leaf}${'}'.repeat(depth)}`;
const nestedArray = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;

/** Field values a device may have written; all legal under LWW (the merge takes any JSON). */
const fieldValue = fc.oneof(
  { weight: 4, arbitrary: anyJson.map(text) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: MAX_DATA_DEPTH - 5 }).map((d) => nested(d, '"deep"')) },
  { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 300_000 }).map((n) => text('x'.repeat(n))) },
  { weight: 1, arbitrary: fc.constantFrom('1e308', '-1e308', '5e-324', '123456789012345678901234567890', '0.1', '-0', 'true', 'null', '"enc:1:Zm9v"') },
  { weight: 1, arbitrary: fc.array(fc.record({ id: fc.oneof(fc.string(), fc.integer()) }), { maxLength: 5 }).map(text) },
);

const dataObject = fc
  .uniqueArray(fc.tuple(weirdKey, fieldValue), { selector: ([k]) => k, minLength: 0, maxLength: 8 })
  .map((entries) => `{${entries.map(([k, v]) => `${text(k)}:${v}`).join(',')}}`);

const keysOf = (json: string): string[] => Object.keys(JSON.parse(json) as object);

/** Stamp strings, ISO or not: mana-sync passes any string, and devices compare them as strings. */
const stampString = fc.oneof(
  { weight: 4, arbitrary: ISO },
  { weight: 1, arbitrary: fc.constantFrom('yesterday', '', '2026-13-01T00:00:00Z', '10000-01-01T00:00:00Z', 'NaN', '1700000000000', 'x'.repeat(100), '\u{1F680}\uE000') },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }).map((v) => v.replace(/\u0000/g, '_')) },
);

/** A metadata object of strings (and JSON nulls) covering some data keys, and some keys not in data. */
function goodMeta(keys: string[]): fc.Arbitrary<string> {
  return fc
    .tuple(fc.subarray(keys), fc.array(fc.tuple(fc.string(), ISO), { maxLength: 2 }), fc.array(stampString, { minLength: keys.length, maxLength: keys.length }))
    .map(([covered, extra, stamps]) => {
      const entries: [string, unknown][] = covered.map((k, i) => [k, stamps[i]!]);
      return text(Object.fromEntries([...extra, ...entries, ...covered.slice(0, 1).map((k) => [`${k}#null`, null])]));
    });
}

/** Metadata entries mana-sync cannot read as strings (JSON null it reads as ""). */
const badStamp = fc.oneof(
  fc.integer().map((n) => n as unknown),
  fc.constantFrom<unknown>(true, [], ['2026-01-01T00:00:00Z'], { at: '2026-01-01T00:00:00Z' }, { at: 5 }, { when: '2026-01-01T00:00:00Z' }),
);

const goodRow: fc.Arbitrary<HostileRow> = fc.oneof(
  // insert/update with object data, metadata in either column, either shape
  fc
    .tuple(fc.constantFrom('insert', 'update'), dataObject, fc.constantFrom('ts', 'meta', 'both', 'none'))
    .chain(([op, data, where]) =>
      goodMeta(keysOf(data)).map((meta): HostileRow => ({
        good: true,
        why: `${op} with ${where} metadata`,
        userId: '',
        recordId: '',
        op,
        data,
        fieldTimestamps: where === 'ts' || where === 'both' ? meta : where === 'none' ? null : '{}',
        fieldMeta: where === 'meta' || where === 'both' ? meta : where === 'none' ? null : '{}',
      })),
    ),
  // delete: soft (a deletedAt string) or hard (anything else in an object, or nothing)
  fc.tuple(fc.option(fc.oneof(dataObject, ISO.map((at) => text({ deletedAt: at })))), fc.option(fc.constant('{}'))).map(([data, meta]): HostileRow => ({
    good: true,
    why: 'delete',
    userId: '',
    recordId: '',
    op: 'delete',
    data,
    fieldTimestamps: meta,
    fieldMeta: meta,
  })),
  // metadata that is JSON null counts as absent
  dataObject.map((data): HostileRow => ({ good: true, why: 'null metadata', userId: '', recordId: '', op: 'insert', data, fieldTimestamps: 'null', fieldMeta: 'null' })),
  // no data: an insert becomes its envelope, an update does nothing
  fc.tuple(fc.constantFrom('insert', 'update'), fc.constantFrom<string | null>(null, 'null', '{}')).map(([op, data]): HostileRow => ({ good: true, why: `${op} without data`, userId: '', recordId: '', op, data, fieldTimestamps: '{}', fieldMeta: '{}' })),
  // anything in field_timestamps: mana-sync reads field_meta where the table has it
  fc.tuple(fc.constantFrom('insert', 'update'), anyJson.map(text)).map(([op, meta]): HostileRow => ({ good: true, why: `${op} with field_timestamps ignored`, userId: '', recordId: '', op, data: '{"title":"t"}', fieldTimestamps: meta, fieldMeta: '{}' })),
);

const badRow: fc.Arbitrary<HostileRow> = fc.oneof(
  fc
    .tuple(fc.oneof(fc.constantFrom('upsert', '', 'INSERT', 'Delete', 'insert ', 'merge'), fc.string({ maxLength: 20 })), dataObject)
    .filter(([op]) => !['insert', 'update', 'delete'].includes(op))
    .map(([op, data]): HostileRow => ({ good: false, why: `unknown op ${JSON.stringify(op)}`, userId: '', recordId: '', op, data, fieldTimestamps: '{}', fieldMeta: '{}' })),
  fc
    .tuple(fc.constantFrom('insert', 'update', 'delete'), fc.constantFrom('[]', '[{"a":1}]', '"str"', '5', 'true'))
    .map(([op, data]): HostileRow => ({ good: false, why: `${op} with data ${data}`, userId: '', recordId: '', op, data, fieldTimestamps: '{}', fieldMeta: '{}' })),
  fc
    .tuple(fc.constantFrom('insert', 'update', 'delete'), fc.constantFrom('[]', '"2026-01-01T00:00:00Z"', '5', 'true', '[{"at":"2026-01-01T00:00:00Z"}]'))
    .map(([op, meta]): HostileRow => ({ good: false, why: `field_meta = ${meta}`, userId: '', recordId: '', op, data: '{"title":"t"}', fieldTimestamps: '{}', fieldMeta: meta })),
  fc
    .tuple(fc.constantFrom('insert', 'update'), dataObject.filter((d) => keysOf(d).length > 0), badStamp)
    .map(([op, data, stamp]): HostileRow => {
      const meta = text({ [keysOf(data)[0]!]: stamp });
      return { good: false, why: `metadata entry ${JSON.stringify(stamp).slice(0, 40)}`, userId: '', recordId: '', op, data, fieldTimestamps: '{}', fieldMeta: meta };
    }),
  fc
    .tuple(fc.integer({ min: MAX_DATA_DEPTH + 1, max: 3000 }), fc.boolean())
    .map(([depth, arr]): HostileRow => ({
      good: false,
      why: `nested ${depth} deep`,
      userId: '',
      recordId: '',
      op: 'insert',
      data: `{"title":"t","blob":${arr ? nestedArray(depth) : nested(depth, '1')}}`,
      fieldTimestamps: '{}',
      fieldMeta: '{}',
    })),
  fc.constantFrom('1e400', '-1e999').map((n): HostileRow => ({ good: false, why: `number ${n}`, userId: '', recordId: '', op: 'update', data: `{"nextRunAt":${n}}`, fieldTimestamps: '{}', fieldMeta: '{}' })),
  fc.tuple(longId, longId).map(([u, r]): HostileRow => ({ good: false, why: 'ids too long to index together', userId: u, recordId: r, op: 'insert', data: '{"title":"t"}', fieldTimestamps: '{}', fieldMeta: '{}' })),
);

/** A row with its ids: a few records shared by the batch (so merges happen), or its own. */
const rowArb = fc
  .tuple(fc.oneof({ weight: 3, arbitrary: goodRow }, { weight: 2, arbitrary: badRow }), idArb, idArb, fc.integer({ min: 0, max: 2 }), fc.boolean())
  .map(([row, u, r, shared, useShared]) => ({
    ...row,
    userId: row.userId || (useShared ? `fuzz-user-${shared}` : u),
    recordId: row.recordId || (useShared ? `fuzz-mission-${shared}` : r),
  }));

async function insert(rows: HostileRow[]): Promise<HostileRow[]> {
  const stored: HostileRow[] = [];
  for (const row of rows) {
    try {
      await db.sql`
        INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_timestamps, field_meta, client_id, created_at)
        VALUES ('ai', 'aiMissions', ${row.recordId}, ${row.userId}, ${row.op}, ${row.data}::text::jsonb, ${row.fieldTimestamps}::text::jsonb, ${row.fieldMeta}::text::jsonb,
          'fuzz', coalesce(${row.createdAt ?? null}::text::timestamptz, now()))`;
      stored.push(row);
    } catch (err: unknown) {
      // Postgres itself refused it (e.g. nesting beyond its stack): mana-sync could not have stored it either.
      if (!['54001', '22P02', '54000', '22003'].includes((err as { code?: string }).code ?? '')) throw err;
    }
  }
  return stored;
}

/** Each run (and each shrink step) starts from an empty log and projection. */
async function reset(): Promise<void> {
  await resetProjection(db.sql);
}

let canaries = 0;
async function canaryPassesThrough(): Promise<void> {
  const id = `canary-${++canaries}`;
  const nextRunAt = '2030-01-01T09:00:00.000Z';
  await db.sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
    VALUES ('ai', 'aiMissions', ${id}, 'canary-user', 'insert', ${db.sql.json({ id, title: id, state: 'active', nextRunAt })}, 'fuzz')`;
  const stats = await projection.refresh();
  expect(stats).toMatchObject({ ran: true, rowsApplied: 1, rowsSkipped: 0 });
  expect(await getMission(db.sql, 'canary-user', id)).toMatchObject({ id, title: id, state: 'active', nextRunAt });
}

describe('hostile sync_changes rows', () => {
  it('the projection never throws, never stalls, and counts exactly the malformed rows', async () => {
    const seenWhy = new Set<string>();
    await fc.assert(
      fc.asyncProperty(fc.array(rowArb, { minLength: 1, maxLength: 12 }), async (rows) => {
        await reset();
        const stored = await insert(rows);
        const before = skippedReported;
        const started = performance.now();
        const stats = await projection.refresh();
        expect(performance.now() - started).toBeLessThan(10_000);
        const bad = stored.filter((r) => !r.good);
        for (const r of stored) seenWhy.add(r.why.split(' ')[0]!);
        expect(stats.ran).toBe(true);
        // A row followed (in this pass) by a hard delete of its record by the same user can never
        // matter, so the projection may skip it unread; every other malformed row is counted, exactly once.
        const hardDelete = (d: HostileRow) => d.op === 'delete' && [null, 'null', '{}'].includes(d.data) && [null, 'null', '{}'].includes(d.fieldMeta);
        const mustCount = (r: HostileRow, i: number) =>
          !stored.slice(i + 1).some((later) => hardDelete(later) && later.userId === r.userId && later.recordId === r.recordId);
        const badCounted = stored.filter((r, i) => !r.good && mustCount(r, i)).length;
        const goodCounted = stored.filter((r, i) => r.good && mustCount(r, i)).length;
        const why = stored.map((r) => `${r.good ? 'good' : 'bad'}: ${r.why}`).join('; ');
        expect(stats.rowsSkipped, why).toBeGreaterThanOrEqual(badCounted);
        expect(stats.rowsSkipped, why).toBeLessThanOrEqual(bad.length);
        expect(stats.rowsApplied, why).toBeGreaterThanOrEqual(goodCounted);
        expect(stats.rowsApplied + stats.rowsSkipped, why).toBeLessThanOrEqual(stored.length);
        expect(skippedReported - before).toBe(stats.rowsSkipped);
        // Read once: nothing is read (or counted) again on the next refresh.
        expect(await projection.refresh()).toMatchObject({ rowsApplied: 0, rowsSkipped: 0 });
        await canaryPassesThrough();
      }),
      { numRuns: 100, skipAllAfterTimeLimit: 35_000 },
    );
    // The generators did reach the classes they are meant to.
    expect([...seenWhy]).toEqual(expect.arrayContaining(['insert', 'update', 'delete', 'unknown', 'metadata', 'field_meta', 'nested', 'ids']));
  }, 60_000);

  it('rows with created_at far in the future are counted once and do not hold later rows back', async () => {
    await reset();
    const rows: HostileRow[] = [
      { good: true, why: 'year 2200', userId: 'future', recordId: 'f1', op: 'insert', data: '{"title":"from the future"}', fieldTimestamps: '{}', fieldMeta: '{}', createdAt: '2200-01-01T00:00:00Z' },
      { good: false, why: 'year 12345', userId: 'future', recordId: 'f2', op: 'insert', data: '{"title":"too far"}', fieldTimestamps: '{}', fieldMeta: '{}', createdAt: '12345-01-01T00:00:00Z' },
    ];
    await insert(rows);
    expect(await projection.refresh()).toMatchObject({ rowsApplied: 1, rowsSkipped: 1 });
    expect(await projection.refresh()).toMatchObject({ rowsApplied: 0, rowsSkipped: 0 });
    await canaryPassesThrough();
    expect(await getMission(db.sql, 'future', 'f1')).toMatchObject({ title: 'from the future' });
  });
});
