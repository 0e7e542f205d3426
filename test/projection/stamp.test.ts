/**
 * src/projection/stamp.ts: versions spell a row's position short, and must
 * still order rows exactly as their positions ("created_at|id") do, in
 * JavaScript and in Postgres' byte order, since versions are compared in both.
 * An id that is not a uuid has no short spelling: its row is never plain.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MIN_INSTANT, parseInstant } from '../../src/projection/instant.js';
import { isPlainVersion, stampOfVersion, versionOf, versionPosition, wins } from '../../src/projection/stamp.js';

/** Canonical instants over the whole range parseInstant accepts, with microseconds. */
const instantArb = fc
  .record({
    ms: fc.integer({ min: Date.parse('0001-01-01T00:00:00.000Z'), max: Date.parse('9999-12-31T23:59:59.999Z') }),
    us: fc.integer({ min: 0, max: 999 }),
  })
  .map(({ ms, us }) => parseInstant(`${new Date(ms).toISOString().slice(0, 23)}${String(us).padStart(3, '0')}Z`))
  .filter((v): v is string => v !== null);
/** Instants of two days, any time of day, so that the time decides as often as the date. */
const nearArb = fc
  .tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 86_399 }), fc.integer({ min: 0, max: 999_999 }))
  .map(([d, s, us]) => `${new Date(Date.UTC(2026, 2, 29 + d, 0, 0, s)).toISOString().slice(0, 19)}.${String(us).padStart(6, '0')}Z`);
/** Ids a text column may hold that are not uuids as Postgres spells them: U+0001 and separators included. */
const otherIdArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.uuid().map((u) => u.toUpperCase()),
  fc.uuid().map((u) => u.replace(/-/g, '')),
  fc.constantFrom('', '|', 'a|', '\u0001', 'z\u0001|', '00000000-0000-0000-0000-00000000000g', '00000000_0000-0000-0000-000000000000'),
).filter((id) => !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id));
/** Uuids, the extremes included. */
const uuidArb = fc.oneof(fc.uuid(), fc.constantFrom('00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'));

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
/** Byte order of UTF-8, as Postgres compares text under COLLATE "C". */
const bytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('versionPosition', () => {
  /** Rows of uuid ids, half of them sharing the first row's instant or id, so that every part decides. */
  const pairArb = fc
    .tuple(fc.oneof(instantArb, nearArb), fc.oneof(instantArb, nearArb), uuidArb, uuidArb, fc.integer({ min: 0, max: 3 }))
    .map(([a, b, ia, ib, same]) => [a, same === 1 ? a : b, ia, same === 2 ? ia : ib] as const);

  it('orders rows of uuid ids as their positions do, in JavaScript and byte for byte (Postgres)', () => {
    fc.assert(
      fc.property(pairArb, ([a, b, ia, ib]) => {
        const [va, vb] = [versionPosition(a, ia), versionPosition(b, ib)];
        const expected = cmp(`${a}|${ia}`, `${b}|${ib}`);
        expect(cmp(va.at, vb.at)).toBe(expected);
        expect(Math.sign(bytes(va.at, vb.at))).toBe(expected);
      }),
      { numRuns: 5000 },
    );
  });

  it('spells a uuid row in 33 characters, the extremes included', () => {
    for (const at of [MIN_INSTANT, '9999-12-31T23:59:59.999999Z', '2026-12-07T19:00:00.123456Z']) {
      for (const id of ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff']) {
        expect(versionPosition(at, id)).toEqual({ at: expect.stringMatching(/^[.0-9A-Z_a-z]{33}$/), plain: true });
      }
    }
    const zero = '00000000-0000-0000-0000-000000000000';
    expect(versionPosition(MIN_INSTANT, zero).at < versionPosition('0001-01-01T00:00:00.000001Z', zero).at).toBe(true);
    expect(versionPosition('2026-12-31T23:59:59.999999Z', 'ffffffff-ffff-ffff-ffff-ffffffffffff').at < versionPosition('2027-01-01T00:00:00.000000Z', zero).at).toBe(true);
  });

  it('keeps any other id whole, and its row out of plain versions', () => {
    fc.assert(
      fc.property(instantArb, otherIdArb, fc.string(), (at, id, stamp) => {
        const pos = versionPosition(at, id);
        expect(pos).toEqual({ at: `${at}|${id}`, plain: false });
        expect(isPlainVersion(versionOf(stamp, pos))).toBe(false);
      }),
    );
  });
});

describe('versions', () => {
  it('give back their stamp whatever the id holds', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.integer(), fc.constant(null)), instantArb, fc.oneof(uuidArb, otherIdArb), (stamp, at, id) => {
        const pos = versionPosition(at, id);
        const v = versionOf(stamp, pos);
        expect(stampOfVersion(v)).toEqual(stamp);
        expect(isPlainVersion(v)).toBe(pos.plain && typeof stamp === 'string' && /^[\u0002-\uD7FF]*$/.test(stamp));
      }),
    );
  });

  it('let the later row win a tie of stamps, and the greater stamp win otherwise', () => {
    const early = versionPosition('2026-01-01T10:00:00.000000Z', 'ffffffff-0000-4000-8000-000000000000');
    const late = versionPosition('2026-01-01T10:00:00.000001Z', '00000000-0000-4000-8000-000000000000');
    expect(wins(versionOf('2026-01-01T09:00:00.000Z', late), versionOf('2026-01-01T09:00:00.000Z', early))).toBe(true);
    expect(wins(versionOf('2026-01-01T09:00:00.000Z', early), versionOf('2026-01-01T09:00:00.000Z', late))).toBe(false);
    expect(wins(versionOf('2026-01-01T09:00:00.001Z', early), versionOf('2026-01-01T09:00:00.000Z', late))).toBe(true);
    // A stamp that is a prefix of another sorts first (as strings do), whatever the positions.
    expect(wins(versionOf('2026-01-01T09:00:00Z', late), versionOf('2026-01-01T09:00:00Z!', early))).toBe(false);
  });
});
