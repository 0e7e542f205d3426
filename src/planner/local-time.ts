/**
 * ECMAScript's local time, for any zone: what `Date`'s local getters and
 * setters do in a process whose local zone is `tz`. The webapp computes a
 * mission's next run with `setHours`/`setDate` in the browser's zone; the
 * server reproduces that result for the user's zone with these two
 * conversions (ECMA-262 LocalTime(t) and UTC(t)). Pure; no clock.
 *
 * "Local ms" is a local date-time written as if it were UTC: milliseconds
 * since 1970-01-01T00:00 local, so day and time-of-day arithmetic is plain
 * integer arithmetic on it, as in the specification.
 */
import { wallClockFormatter } from '../lib/time-zone.js';

export const MS_PER_DAY = 86_400_000;

/** Milliseconds `tz`'s wall clock is ahead of UTC at `instant` (exact to the second). */
export function zoneOffsetMs(instant: number, tz: string): number {
  const fmt = wallClockFormatter(tz);
  if (!fmt) throw new Error(`expected a time zone Intl knows, got ${JSON.stringify(tz)}`);
  const p: Record<string, number> = {};
  for (const part of fmt.formatToParts(instant)) {
    if (part.type !== 'literal') p[part.type] = Number(part.value);
  }
  const wall = Date.UTC(p['year'] ?? NaN, (p['month'] ?? NaN) - 1, p['day'] ?? NaN, p['hour'] ?? NaN, p['minute'] ?? NaN, p['second'] ?? NaN);
  return wall - Math.floor(instant / 1000) * 1000;
}

/** LocalTime(t): the local ms of `instant` in `tz`. */
export function toLocal(instant: number, tz: string): number {
  return instant + zoneOffsetMs(instant, tz);
}

/**
 * The instants whose local time in `tz` is exactly `local`, earliest first:
 * one normally, two in a repeated hour (fall back), none in a skipped one
 * (spring forward). The offsets in force a day either side and at the
 * moment itself cover any transition near it.
 */
export function instantsAt(local: number, tz: string): number[] {
  const offsets = new Set([zoneOffsetMs(local - MS_PER_DAY, tz), zoneOffsetMs(local, tz), zoneOffsetMs(local + MS_PER_DAY, tz)]);
  const found = new Set<number>();
  for (const offset of offsets) {
    const instant = local - offset;
    if (toLocal(instant, tz) === local) found.add(instant);
  }
  return [...found].sort((a, b) => a - b);
}

/**
 * UTC(t): the instant `Date` picks for a local time. A repeated local time
 * is the earlier instant; a skipped one is read with the offset in force
 * before the transition (the offset of the same local time a day earlier),
 * so 02:30 on a day that jumps 02:00 → 03:00 becomes 03:30.
 */
export function fromLocal(local: number, tz: string): number {
  const exact = instantsAt(local, tz);
  if (exact.length > 0) return exact[0]!;
  const dayBefore = instantsAt(local - MS_PER_DAY, tz);
  const reference = dayBefore.length > 0 ? dayBefore[dayBefore.length - 1]! : local - MS_PER_DAY - zoneOffsetMs(local - MS_PER_DAY, tz);
  return local - zoneOffsetMs(reference, tz);
}

/** Day(t): whole days of a local ms (floor, so times before 1970 work too). */
export function dayOf(local: number): number {
  return Math.floor(local / MS_PER_DAY);
}

/** WeekDay(t): 0 = Sunday, like `Date#getDay` (1970-01-01 was a Thursday). */
export function weekdayOf(local: number): number {
  return (((dayOf(local) + 4) % 7) + 7) % 7;
}
