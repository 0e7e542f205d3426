/**
 * Zone names from devices: canonicalised through Intl, and the caches that
 * hold names and formatters stay bounded whatever spellings arrive.
 */
import { describe, expect, it } from 'vitest';
import { nextRunAt } from '../../src/planner/cadence.js';
import { canonicalTimeZone, isValidTimeZone, TIME_ZONE_CACHE_LIMIT, timeZoneCacheSizes, wallClockFormatter } from '../../src/lib/time-zone.js';

/** Every upper/lower-case spelling of `name` (2^letters of them), up to `max`. */
function caseVariants(name: string, max: number): string[] {
  const out: string[] = [];
  const letters = [...name].map((ch, i) => (ch.toLowerCase() !== ch.toUpperCase() ? i : -1)).filter((i) => i >= 0);
  for (let mask = 0; mask < 2 ** letters.length && out.length < max; mask++) {
    const chars = [...name.toLowerCase()];
    letters.forEach((at, bit) => {
      if (mask & (1 << bit)) chars[at] = chars[at]!.toUpperCase();
    });
    out.push(chars.join(''));
  }
  return out;
}

describe('canonicalTimeZone', () => {
  it.each([
    ['Europe/Berlin', 'Europe/Berlin'],
    ['europe/berlin', 'Europe/Berlin'],
    ['AMERICA/NEW_YORK', 'America/New_York'],
    ['Mars/Olympus_Mons', undefined],
    ['Europe/Berlin ', undefined],
    ['', undefined],
    [42, undefined],
    [null, undefined],
    ['x'.repeat(65), undefined],
  ])('%j → %j', (name, expected) => {
    expect(canonicalTimeZone(name)).toBe(expected);
  });

  it('isValidTimeZone follows it', () => {
    expect(isValidTimeZone('asia/tokyo')).toBe(true);
    expect(isValidTimeZone('Asia/Atlantis')).toBe(false);
  });
});

describe('the caches are keyed by the canonical zone and bounded', () => {
  it('All 4,096 case variants of one zone make one formatter, and the name cache stays within its bound', () => {
    const variants = caseVariants('Europe/Berlin', 5_000);
    expect(variants.length).toBe(4_096);
    const before = timeZoneCacheSizes().formatters;
    const formatters = new Set(variants.map((v) => wallClockFormatter(v)));
    expect(formatters.size).toBe(1);
    expect(timeZoneCacheSizes().formatters).toBeLessThanOrEqual(before + 1);
    expect(timeZoneCacheSizes().names).toBeLessThanOrEqual(TIME_ZONE_CACHE_LIMIT);
    // And a cadence computed under any spelling is the same instant.
    const at = new Date('2024-07-01T05:00:00Z');
    const results = new Set(variants.slice(0, 200).map((v) => (nextRunAt({ kind: 'daily', atHour: 9, atMinute: 0 }, at, v) as { next: Date }).next.toISOString()));
    expect([...results]).toEqual(['2024-07-01T07:00:00.000Z']);
  });

  it('junk names never grow the caches past their bound', () => {
    for (let i = 0; i < 3 * TIME_ZONE_CACHE_LIMIT; i++) expect(canonicalTimeZone(`Nowhere/Place_${i}`)).toBeUndefined();
    expect(timeZoneCacheSizes().names).toBeLessThanOrEqual(TIME_ZONE_CACHE_LIMIT);
    // Evicted valid names are simply resolved again.
    expect(canonicalTimeZone('europe/berlin')).toBe('Europe/Berlin');
  });

  it('every zone Intl knows, in two spellings each, keeps both caches within the bound', () => {
    const zones = Intl.supportedValuesOf('timeZone');
    for (const z of zones) {
      wallClockFormatter(z);
      wallClockFormatter(z.toUpperCase());
    }
    const sizes = timeZoneCacheSizes();
    expect(sizes.formatters).toBeLessThanOrEqual(Math.min(TIME_ZONE_CACHE_LIMIT, zones.length));
    expect(sizes.names).toBeLessThanOrEqual(TIME_ZONE_CACHE_LIMIT);
  });
});
