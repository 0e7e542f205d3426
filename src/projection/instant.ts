/**
 * Instants as fixed-width UTC strings with microsecond precision
 * ("2026-01-02T03:04:05.123456Z"). Fixed width makes string order equal time
 * order, so LWW comparisons stay plain string compares, and microseconds
 * keep Postgres' timestamptz precision (a JS Date would drop it).
 */

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,12}))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  if (month === 2 && ((year % 4 === 0 && year % 100 !== 0) || year % 400 === 0)) return 29;
  return DAYS_IN_MONTH[month - 1] ?? 0;
}

/** The smallest instant, used as "before everything" (e.g. an empty cursor). */
export const MIN_INSTANT = '0001-01-01T00:00:00.000000Z';

/**
 * Parses an ISO-8601 instant into canonical form, or null when it is not one.
 * A missing zone is read as UTC (devices write toISOString(), always with Z).
 */
export function parseInstant(value: unknown): string | null {
  if (typeof value !== 'string' || value.length > 40) return null;
  const m = ISO.exec(value);
  if (!m) return null;
  const [, ys, mos, ds, hs, mis, ss, frac, zone] = m;
  const y = Number(ys);
  const mo = Number(mos);
  const d = Number(ds);
  const h = Number(hs);
  const mi = Number(mis);
  const s = ss === undefined ? 0 : Number(ss);
  if (mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 59) return null;
  let offsetMin = 0;
  if (zone && zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (oh > 15 || om > 59) return null;
    offsetMin = sign * (oh * 60 + om);
  }
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  const ms = date.getTime() - offsetMin * 60_000;
  if (!Number.isFinite(ms)) return null;
  const iso = new Date(ms).toISOString();
  // Years outside 0001–9999 have no fixed-width form; treat them as malformed.
  if (iso.length !== 24 || iso.startsWith('0000')) return null;
  const micros = (frac ?? '').padEnd(6, '0').slice(0, 6);
  return `${iso.slice(0, 19)}.${micros}Z`;
}

/** Canonical form of a Date (millisecond precision). */
export function instantOf(date: Date): string {
  return `${date.toISOString().slice(0, 23)}000Z`;
}

/** Milliseconds since the epoch of a canonical instant. */
export function instantMs(instant: string): number {
  return Date.parse(`${instant.slice(0, 23)}Z`);
}
