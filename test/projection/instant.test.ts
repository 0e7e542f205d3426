/**
 * src/projection/instant.ts: the created_at and field-timestamp instants the
 * LWW rules compare, parsed once and compared as instants, never as strings.
 */
import { describe, expect, it } from 'vitest';
import { instantMs, instantOf, MIN_INSTANT, parseInstant } from '../../src/projection/instant.js';

describe('parseInstant', () => {
  const ok: [string, string][] = [
    ['2026-01-01T10:00:00Z', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01T10:00:00.000Z', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01T10:00:00.123456Z', '2026-01-01T10:00:00.123456Z'],
    ['2026-01-01T10:00:00.1Z', '2026-01-01T10:00:00.100000Z'],
    // Beyond microseconds: truncated, so order is kept and Postgres precision matches.
    ['2026-01-01T10:00:00.1234569Z', '2026-01-01T10:00:00.123456Z'],
    ['2026-01-01T10:00:00,5Z', '2026-01-01T10:00:00.500000Z'],
    ['2026-01-01T10:00Z', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01 10:00:00z', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01t10:00:00Z', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01T10:00:00', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01T12:00:00+02:00', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01T12:00:00+0200', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01T12:00:00+02', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01T04:30:00-05:30', '2026-01-01T10:00:00.000000Z'],
    ['2026-01-01T12:00:00.654321+02:00', '2026-01-01T10:00:00.654321Z'],
    ['2026-01-01T01:00:00+02:00', '2025-12-31T23:00:00.000000Z'],
    ['2025-12-31T23:30:00-14:00', '2026-01-01T13:30:00.000000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000000Z'],
    ['2000-02-29T00:00:00Z', '2000-02-29T00:00:00.000000Z'],
    ['2024-03-01T00:30:00+01:00', '2024-02-29T23:30:00.000000Z'],
    ['0001-01-01T00:00:00Z', MIN_INSTANT],
    ['0099-06-15T00:00:00Z', '0099-06-15T00:00:00.000000Z'],
    ['9999-12-31T23:59:59.999999Z', '9999-12-31T23:59:59.999999Z'],
  ];
  for (const [input, expected] of ok) {
    it(`${input} → ${expected}`, () => expect(parseInstant(input)).toBe(expected));
  }

  const bad: [string, unknown][] = [
    ['Feb 29 in a common year', '2025-02-29T00:00:00Z'],
    ['Feb 29 in a century that is not a leap year', '1900-02-29T00:00:00Z'],
    ['Feb 30', '2024-02-30T00:00:00Z'],
    ['Apr 31', '2026-04-31T00:00:00Z'],
    ['month 13', '2026-13-01T00:00:00Z'],
    ['month 0', '2026-00-10T00:00:00Z'],
    ['day 0', '2026-01-00T00:00:00Z'],
    ['hour 24', '2026-01-01T24:00:00Z'],
    ['minute 60', '2026-01-01T10:60:00Z'],
    ['second 60', '2026-01-01T10:00:60Z'],
    ['offset hours 16', '2026-01-01T10:00:00+16:00'],
    ['offset minutes 60', '2026-01-01T10:00:00+01:60'],
    ['date only', '2026-01-01'],
    ['no separator', '20260101T100000Z'],
    ['trailing text', '2026-01-01T10:00:00Z junk'],
    ['leading space', ' 2026-01-01T10:00:00Z'],
    ['year 0000', '0000-06-01T00:00:00Z'],
    ['offset pushes year 0001 into year 0', '0001-01-01T00:00:00+01:00'],
    ['offset pushes 9999 into 10000', '9999-12-31T23:00:00-02:00'],
    ['extended year', '+012026-01-01T00:00:00Z'],
    ['empty string', ''],
    ['over-long string', `2026-01-01T10:00:00.${'0'.repeat(40)}Z`],
    ['a number', 1767261600000],
    ['a Date object', new Date()],
    ['null', null],
    ['undefined', undefined],
    ['an object', { at: '2026-01-01T10:00:00Z' }],
  ];
  for (const [name, input] of bad) {
    it(`rejects ${name}`, () => expect(parseInstant(input)).toBeNull());
  }

  it('canonical strings sort in time order', () => {
    const spelled = ['2026-01-01T09:30:00-01:00', '2026-01-01T10:00:00Z', '2026-01-01T10:00:00.000001Z', '2026-01-01T12:00:00.5+02:00', '0999-01-01T00:00:00Z'];
    const parsed = spelled.map((s) => parseInstant(s)!);
    const byString = [...parsed].sort();
    const byTime = [...parsed].sort((a, b) => Date.parse(a) - Date.parse(b) || (a < b ? -1 : 1));
    expect(byString).toEqual(byTime);
    expect(parsed.every((p) => p.length === 27)).toBe(true);
  });

  it('instantOf and instantMs round-trip milliseconds', () => {
    const d = new Date(Date.UTC(2026, 1, 28, 23, 59, 59, 987));
    expect(instantOf(d)).toBe('2026-02-28T23:59:59.987000Z');
    expect(instantMs(instantOf(d))).toBe(d.getTime());
    expect(parseInstant(instantOf(d))).toBe(instantOf(d));
  });
});
