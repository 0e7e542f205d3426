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
  if (value.length === 27 || value.length === 24) {
    const fast = parseUtcFixed(value);
    if (fast !== undefined) return fast;
  }
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

/** Value of n ASCII digits at `at`, or -1. */
export function digitsAt(s: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/**
 * The fast path for what devices and the database actually write:
 * `YYYY-MM-DDTHH:MM:SS.sssZ` (toISOString) and the canonical
 * `YYYY-MM-DDTHH:MM:SS.ssssssZ`. Returns exactly what the general parser
 * would (the canonical form itself is returned as is, no copy), or undefined
 * to leave anything else — other spellings, out-of-range fields, year 0000 —
 * to it.
 */
function parseUtcFixed(v: string): string | null | undefined {
  const len = v.length;
  if (
    v.charCodeAt(4) !== 45 /* - */ || v.charCodeAt(7) !== 45 || v.charCodeAt(10) !== 84 /* T */ ||
    v.charCodeAt(13) !== 58 /* : */ || v.charCodeAt(16) !== 58 || v.charCodeAt(19) !== 46 /* . */ ||
    v.charCodeAt(len - 1) !== 90 /* Z */
  ) {
    return undefined;
  }
  const y = digitsAt(v, 0, 4);
  const mo = digitsAt(v, 5, 2);
  const d = digitsAt(v, 8, 2);
  const h = digitsAt(v, 11, 2);
  const mi = digitsAt(v, 14, 2);
  const s = digitsAt(v, 17, 2);
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59) return undefined;
  if (digitsAt(v, 20, len - 21) < 0) return undefined;
  return len === 27 ? v : `${v.slice(0, 23)}000Z`;
}

/** Canonical form of a Date (millisecond precision). */
export function instantOf(date: Date): string {
  return `${date.toISOString().slice(0, 23)}000Z`;
}

/** Milliseconds since the epoch of a canonical instant. */
export function instantMs(instant: string): number {
  return Date.parse(`${instant.slice(0, 23)}Z`);
}
