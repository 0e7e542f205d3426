/**
 * When a mission is due next, from its cadence (docs/contract.md §2). Pure: the
 * caller passes the reference instant and the time zone.
 *
 * Wall-clock cadences (daily, weekly, cron) are read in the mission's time
 * zone. Where a wall-clock time does not exist or exists twice, we follow
 * the convention of JavaScript's `Date`, Temporal's `'compatible'`
 * disambiguation and cron-parser, so the server agrees with the webapp (which
 * computes with the browser's `Date`) and with our own cron cadences:
 *
 * - Gap (spring forward): a time inside the skipped hour is moved forward by
 *   the length of the gap. Daily 02:30 on Berlin's 02:00→03:00 day runs at
 *   03:30 CEST; daily 02:00 runs at 03:00.
 * - Overlap (fall back): an ambiguous time resolves to its FIRST occurrence,
 *   and a cadence runs once per day there, never twice.
 */
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import type { Cadence, Mission } from '../projection/mission.js';

export type NextRunResult = { ok: true; next: Date | null } | { ok: false; reason: string };

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
/** An interval longer than a year is a typo, not a schedule. */
export const MAX_INTERVAL_MINUTES = 366 * 24 * 60;

const int = (min: number, max: number) => z.number().int().min(min).max(max);

// z.object (not strict): devices may store extra keys on a cadence; we only
// need the ones we read.
const CadenceSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('manual') }),
  z.object({ kind: z.literal('interval'), everyMinutes: int(1, MAX_INTERVAL_MINUTES) }),
  z.object({ kind: z.literal('daily'), atHour: int(0, 23), atMinute: int(0, 59) }),
  z.object({ kind: z.literal('weekly'), dayOfWeek: int(0, 6), atHour: int(0, 23) }),
  z.object({ kind: z.literal('cron'), expression: z.string().min(1).max(200) }),
]);

/**
 * The first run strictly after `after`.
 *
 * @param cadence untrusted: validated here, a bad shape gives `ok: false`.
 * @param timeZone an IANA zone (e.g. `Europe/Berlin`); see {@link resolveTimeZone}.
 * @returns `next: null` for a manual cadence (no automatic run).
 */
export function nextRunAt(cadence: unknown, after: Date, timeZone: string): NextRunResult {
  if (!(after instanceof Date) || Number.isNaN(after.getTime())) return { ok: false, reason: 'invalid reference date' };
  if (!isValidTimeZone(timeZone)) return { ok: false, reason: `invalid time zone ${JSON.stringify(timeZone)}` };
  const parsed = CadenceSchema.safeParse(cadence);
  if (!parsed.success) return { ok: false, reason: `invalid cadence: ${describeIssues(parsed.error)}` };
  const c: Cadence = parsed.data;
  switch (c.kind) {
    case 'manual':
      return { ok: true, next: null };
    case 'interval':
      return { ok: true, next: new Date(after.getTime() + c.everyMinutes * MINUTE_MS) };
    case 'daily':
      return { ok: true, next: nextWallClock(after, timeZone, c.atHour, c.atMinute, () => true) };
    case 'weekly':
      return { ok: true, next: nextWallClock(after, timeZone, c.atHour, 0, (date) => weekday(date) === c.dayOfWeek) };
    case 'cron':
      return nextCron(c.expression, after, timeZone);
  }
}

/**
 * The mission's own `timezone` when it is a valid IANA zone, else `defaultTz`.
 * Missions come from devices, so a missing or garbled zone must not stop
 * scheduling.
 */
export function resolveTimeZone(mission: Pick<Mission, 'timezone'>, defaultTz: string): string {
  const tz = mission.timezone;
  return typeof tz === 'string' && isValidTimeZone(tz) ? tz : defaultTz;
}

/** Whether `Intl` knows the zone (names are case-insensitive there). */
export function isValidTimeZone(timeZone: string): boolean {
  return typeof timeZone === 'string' && timeZone !== '' && formatterFor(timeZone) !== undefined;
}

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
}

function nextCron(expression: string, after: Date, timeZone: string): NextRunResult {
  // cron-parser also takes 6 fields (seconds) and macros; the contract says 5.
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) {
    return { ok: false, reason: `invalid cadence: cron expression needs 5 fields, got ${fields.length}` };
  }
  try {
    const it = CronExpressionParser.parse(fields.join(' '), { currentDate: after, tz: timeZone });
    return { ok: true, next: it.next().toDate() };
  } catch (e: unknown) {
    return { ok: false, reason: `invalid cadence: cron: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** A calendar date, month 1-12. */
interface CalendarDate {
  year: number;
  month: number;
  day: number;
}

/**
 * The first instant strictly after `after` whose wall-clock time in `tz` is
 * hour:minute on a day `dayMatches` accepts.
 */
function nextWallClock(
  after: Date,
  tz: string,
  hour: number,
  minute: number,
  dayMatches: (date: CalendarDate) => boolean,
): Date {
  const start = wallClock(after.getTime(), tz);
  // Day 0 may already be past; 14 days covers a weekly cadence plus zones
  // that skip a calendar day (Pacific/Apia, 2011-12-30).
  for (let i = 0; i < 15; i++) {
    const date = addDays(start, i);
    if (!dayMatches(date)) continue;
    const candidate = zonedToInstant({ ...date, hour, minute }, tz);
    if (candidate > after.getTime()) return new Date(candidate);
  }
  throw new Error('unreachable: no matching day within 15 days');
}

function addDays(date: CalendarDate, days: number): CalendarDate {
  const d = new Date(Date.UTC(date.year, date.month - 1, date.day) + days * DAY_MS);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

/** 0 = Sunday, as in the contract and `Date#getDay`. */
function weekday(date: CalendarDate): number {
  return new Date(Date.UTC(date.year, date.month - 1, date.day)).getUTCDay();
}

interface WallTime extends CalendarDate {
  hour: number;
  minute: number;
}

/**
 * The instant a wall-clock time names in `tz`, with the module's gap and
 * overlap rules. The offsets one day either side bracket any single
 * transition near the time: both fit in an overlap (take the earlier
 * instant), neither fits in a gap (use the offset from before the gap, which
 * lands the gap's length later, like `Date`).
 */
function zonedToInstant(local: WallTime, tz: string): number {
  const asUtc = Date.UTC(local.year, local.month - 1, local.day, local.hour, local.minute);
  const offsets = [offsetAt(asUtc - DAY_MS, tz), offsetAt(asUtc + DAY_MS, tz)];
  const fits = offsets.map((o) => asUtc - o).filter((t) => sameWallTime(wallClock(t, tz), local));
  if (fits.length > 0) return Math.min(...fits);
  return asUtc - offsets[0]!;
}

function sameWallTime(a: WallTime, b: WallTime): boolean {
  return a.year === b.year && a.month === b.month && a.day === b.day && a.hour === b.hour && a.minute === b.minute;
}

/** Milliseconds the zone's wall clock is ahead of UTC at `instant`. */
function offsetAt(instant: number, tz: string): number {
  const w = wallClock(instant, tz);
  const wallAsUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return wallAsUtc - Math.floor(instant / 1000) * 1000;
}

function wallClock(instant: number, tz: string): WallTime & { second: number } {
  const fmt = formatterFor(tz);
  if (!fmt) throw new Error(`invalid time zone ${tz}`);
  const parts: Record<string, number> = {};
  for (const p of fmt.formatToParts(instant)) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  return {
    year: parts['year'] ?? NaN,
    month: parts['month'] ?? NaN,
    day: parts['day'] ?? NaN,
    hour: parts['hour'] ?? NaN,
    minute: parts['minute'] ?? NaN,
    second: parts['second'] ?? NaN,
  };
}

// Building a DateTimeFormat costs far more than using one; zones are few.
// Only valid zones are cached, so junk from devices cannot grow the map.
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(tz: string): Intl.DateTimeFormat | undefined {
  const cached = formatters.get(tz);
  if (cached) return cached;
  try {
    const fmt = new Intl.DateTimeFormat('en-US-u-ca-gregory-nu-latn', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(tz, fmt);
    return fmt;
  } catch {
    return undefined;
  }
}
