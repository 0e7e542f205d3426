/**
 * src/projection/stamp.ts: versions spell a row's position short, and must
 * still order rows exactly as their positions ("created_at|id") do, in
 * JavaScript and in Postgres' byte order, since versions are compared in both.
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
/** Ids: uuids, and anything else a text column may hold, U+0001 and separators included. */
const idArb = fc.oneof(fc.uuid(), fc.string({ unit: 'binary', maxLength: 6 }), fc.constantFrom('', '|', 'a|', '\u0001', 'z\u0001|'));

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
/** Byte order of UTF-8, as Postgres compares text under COLLATE "C". */
const bytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('versionPosition', () => {
  it('orders rows as their positions do, in JavaScript', () => {
    fc.assert(
      fc.property(fc.oneof(instantArb, nearArb), fc.oneof(instantArb, nearArb), idArb, idArb, (a, b, ia, ib) => {
        expect(cmp(versionPosition(a, ia), versionPosition(b, ib))).toBe(cmp(`${a}|${ia}`, `${b}|${ib}`));
      }),
      { numRuns: 5000 },
    );
  });

  it('orders rows as their positions do, byte for byte (Postgres)', () => {
    fc.assert(
      fc.property(fc.oneof(instantArb, nearArb), fc.oneof(instantArb, nearArb), fc.uuid(), fc.uuid(), (a, b, ia, ib) => {
        expect(Math.sign(bytes(versionPosition(a, ia), versionPosition(b, ib)))).toBe(cmp(`${a}|${ia}`, `${b}|${ib}`));
      }),
      { numRuns: 2000 },
    );
  });

  it('spells the instant in 11 characters, the extremes included', () => {
    for (const at of [MIN_INSTANT, '9999-12-31T23:59:59.999999Z', '2026-12-07T19:00:00.123456Z']) {
      expect(versionPosition(at, 'id')).toHaveLength(13);
    }
    expect(versionPosition(MIN_INSTANT, '') < versionPosition('0001-01-01T00:00:00.000001Z', '')).toBe(true);
    expect(versionPosition('2026-12-31T23:59:59.999999Z', '') < versionPosition('2027-01-01T00:00:00.000000Z', '')).toBe(true);
  });
});

describe('versions', () => {
  it('give back their stamp whatever the id holds', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.integer(), fc.constant(null)), instantArb, idArb, (stamp, at, id) => {
        const v = versionOf(stamp, versionPosition(at, id));
        expect(stampOfVersion(v)).toEqual(stamp);
        expect(isPlainVersion(v)).toBe(typeof stamp === 'string' && /^[\u0002-\uD7FF]*$/.test(stamp));
      }),
    );
  });

  it('let the later row win a tie of stamps, and the greater stamp win otherwise', () => {
    const early = versionPosition('2026-01-01T10:00:00.000000Z', 'b');
    const late = versionPosition('2026-01-01T10:00:00.000001Z', 'a');
    expect(wins(versionOf('2026-01-01T09:00:00.000Z', late), versionOf('2026-01-01T09:00:00.000Z', early))).toBe(true);
    expect(wins(versionOf('2026-01-01T09:00:00.000Z', early), versionOf('2026-01-01T09:00:00.000Z', late))).toBe(false);
    expect(wins(versionOf('2026-01-01T09:00:00.001Z', early), versionOf('2026-01-01T09:00:00.000Z', late))).toBe(true);
    // A stamp that is a prefix of another sorts first (as strings do), whatever the positions.
    expect(wins(versionOf('2026-01-01T09:00:00Z', late), versionOf('2026-01-01T09:00:00Z!', early))).toBe(false);
  });
});
