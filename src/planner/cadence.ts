/**
 * When a mission is due next, from its cadence (docs/contract.md §2). Pure: the
 * caller passes the reference instant and the time zone.
 *
 * Interval, daily and weekly cadences give exactly what the webapp's own
 * next-run function gives when its browser's local zone is `timeZone`: it
 * sets the local hour and minute of the reference instant (`setHours`), and
 * if that is not later, moves on by local calendar days (`setDate`), each
 * step on the local fields of the instant the previous step produced
 * (local-time.ts). So where a wall-clock time does not exist or exists twice:
 *
 * - Gap (spring forward): a time inside the skipped hour is read with the
 *   offset before the jump, i.e. moved forward by the gap. Daily 02:30 on
 *   Berlin's 02:00→03:00 day runs at 03:30 CEST — and when that 03:30 is the
 *   reference, the next run is the next day's 03:30 (the day step keeps the
 *   local time it was handed).
 * - Overlap (fall back): an ambiguous time resolves to its FIRST occurrence,
 *   and a cadence runs once per day there, never twice.
 *
 * Cron is ours (the webapp has none): cron-parser in the same zone.
 */
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import type { Cadence, Mission } from '../projection/mission.js';
import { dayOf, fromLocal, MS_PER_DAY, toLocal, weekdayOf } from './local-time.js';
import { canonicalTimeZone } from '../lib/time-zone.js';

export { isValidTimeZone } from '../lib/time-zone.js';

export type NextRunResult = { ok: true; next: Date | null } | { ok: false; reason: string };

const MINUTE_MS = 60_000;
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
  const tz = canonicalTimeZone(timeZone);
  if (tz === undefined) return { ok: false, reason: `invalid time zone ${JSON.stringify(timeZone)}` };
  const parsed = CadenceSchema.safeParse(cadence);
  if (!parsed.success) return { ok: false, reason: `invalid cadence: ${describeIssues(parsed.error)}` };
  const c: Cadence = parsed.data;
  switch (c.kind) {
    case 'manual':
      return { ok: true, next: null };
    case 'interval':
      return { ok: true, next: new Date(after.getTime() + c.everyMinutes * MINUTE_MS) };
    case 'daily':
      return { ok: true, next: new Date(nextDaily(after.getTime(), tz, c.atHour, c.atMinute)) };
    case 'weekly':
      return { ok: true, next: new Date(nextWeekly(after.getTime(), tz, c.dayOfWeek, c.atHour)) };
    case 'cron':
      return nextCron(c.expression, after, tz);
  }
}

/**
 * The zone a mission's next run is computed in: the one the user's devices
 * last reported (their browsers' local zone, which the webapp computes in),
 * else the mission's own `timezone` field when it names a zone, else
 * `defaultTz`. Always a canonical name; junk from devices never stops
 * scheduling.
 */
export function resolveTimeZone(mission: Pick<Mission, 'timezone'>, defaultTz: string, userTz?: string | null): string {
  return canonicalTimeZone(userTz) ?? canonicalTimeZone(mission.timezone) ?? canonicalTimeZone(defaultTz) ?? defaultTz;
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

/** `setHours(h, m, 0, 0)` on the local day of `instant`. */
function atLocalTime(instant: number, tz: string, hour: number, minute: number): number {
  return fromLocal(dayOf(toLocal(instant, tz)) * MS_PER_DAY + (hour * 60 + minute) * 60_000, tz);
}

/** `setDate(getDate() + days)`: the same local time-of-day `days` local days on. */
function addLocalDays(instant: number, tz: string, days: number): number {
  return fromLocal(toLocal(instant, tz) + days * MS_PER_DAY, tz);
}

/** Today at hour:minute if that is later than `from`, else tomorrow (from today's result). */
function nextDaily(from: number, tz: string, hour: number, minute: number): number {
  const today = atLocalTime(from, tz, hour, minute);
  return today > from ? today : addLocalDays(today, tz, 1);
}

/** The next `dayOfWeek` (0 = Sunday) at hour:00; the same weekday only if still ahead, else a week on. */
function nextWeekly(from: number, tz: string, dayOfWeek: number, hour: number): number {
  const today = atLocalTime(from, tz, hour, 0);
  const ahead = (dayOfWeek - weekdayOf(toLocal(today, tz)) + 7) % 7;
  return addLocalDays(today, tz, ahead === 0 && today <= from ? 7 : ahead);
}
