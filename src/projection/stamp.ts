/**
 * Stamps and versions: how the projection orders one field's writes.
 *
 * The webapp keeps, per field, the stamp of the write that set it and lets
 * a new write win when `newStamp >= storedStamp` with JavaScript's `>=` on
 * whatever the stamps are (docs/contract.md §1). Stamps are raw: ISO strings
 * in practice, but a device may have written anything (an insert's
 * `updatedAt` can be a number).
 *
 * A version is one string per field write: the stamp, then the row's
 * position, spelled short (versionPosition). For a *plain* stamp — a string
 * whose UTF-16 code units all lie in U+0002–U+D7FF — string order of
 * versions is exactly (stamp, position) order: the separator U+0001 sorts
 * below every unit a plain stamp may hold, so a stamp that is a prefix of
 * another sorts first, as it should; and Postgres' `COLLATE "C"` (UTF-8
 * bytes, i.e. code points) orders plain versions as JavaScript orders UTF-16
 * units, which is not so for units from U+D800 up (an astral character
 * against U+E000–U+FFFF).
 * Any other stamp, and every stamp of a row whose id is not a uuid
 * (versionPosition), is kept as JSON behind U+FFFF, which no plain stamp
 * contains; records holding such a version are merged in JavaScript only.
 */

import { digitsAt } from './instant.js';

/** Separates the stamp from the position in a version; sorts below every unit of a plain stamp. */
const SEP = '\u0001';
/** Starts a version whose stamp is not plain (its JSON follows). */
const NOT_PLAIN = '\uFFFF';
const PLAIN = /^[\u0002-\uD7FF]*$/;

/** True for a string whose code units all lie in U+0002–U+D7FF (see above). */
export function isPlainStamp(stamp: unknown): stamp is string {
  return typeof stamp === 'string' && PLAIN.test(stamp);
}

/**
 * Digits of the version positions, in ascending code points (each sorts as
 * its value): a fixed number of them spells a number so that string order
 * is numeric order. None needs escaping in JSON, none is SEP.
 */
const DIGITS = '.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';

/** `value` (a safe integer below 64^width) in `width` DIGITS. */
function digits64(value: number, width: number): string {
  let out = '';
  for (let i = 0; i < width; i++) {
    out = DIGITS[value % 64]! + out;
    value = Math.floor(value / 64);
  }
  return out;
}

/** Value of a lowercase hex digit, or -1. */
const hexValue = (c: number) => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1);

/**
 * A uuid as Postgres spells one (36 characters, lowercase, hyphens at fixed
 * places) in 22 DIGITS, or null for any other id. Its 32 hex digits behind
 * one zero are 11 groups of 12 bits, each two DIGITS: fixed width, so the
 * order of the short spellings is the uuids' order.
 */
function shortUuid(id: string): string | null {
  if (id.length !== 36) return null;
  let out = '';
  let group = 0;
  let nibbles = 1;
  for (let i = 0; i < 36; i++) {
    const c = id.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 45 /* - */) return null;
      continue;
    }
    const v = hexValue(c);
    if (v < 0) return null;
    group = group * 16 + v;
    if (++nibbles === 3) {
      out += DIGITS[group >> 6]! + DIGITS[group & 63]!;
      group = 0;
      nibbles = 0;
    }
  }
  return out;
}

/** Where a row's writes stand among a record's, as its versions carry it (versionPosition). */
export interface VersionPosition {
  at: string;
  /** False for a row whose id is not a uuid: its versions are never plain. */
  plain: boolean;
}

/**
 * A row's position as versions carry it: its created_at (a canonical
 * instant, instant.ts) in 11 characters, then its id, a uuid, in 22. Two
 * of these compare as the positions ("created_at|id") they come from: the
 * instant's fields in mixed radix, date then time of day, are numbers whose
 * order is the instants' order, and both parts have a fixed width.
 * Versions are half of a stored view's bytes (one per field): spelled out,
 * they made most views too wide to fit three to a Postgres page, and each
 * of the two long parts made the merge statement that rewrites them about
 * a fifth slower (BENCHMARKS.md, the projection's notes).
 *
 * mana-sync's ids are uuids. An id that is not one keeps the long position,
 * and its row's versions are never plain: were they, such a row written in
 * the same microsecond as a uuid row of the record could order differently
 * from its position. Versions that are not plain are compared by stamp
 * only, in replay order, and their records are merged in JavaScript only.
 */
export function versionPosition(createdAt: string, id: string): VersionPosition {
  const short = shortUuid(id);
  if (short === null) return { at: `${createdAt}|${id}`, plain: false };
  const date = (digitsAt(createdAt, 0, 4) * 13 + digitsAt(createdAt, 5, 2)) * 32 + digitsAt(createdAt, 8, 2);
  const time = ((digitsAt(createdAt, 11, 2) * 60 + digitsAt(createdAt, 14, 2)) * 60 + digitsAt(createdAt, 17, 2)) * 1e6 + digitsAt(createdAt, 20, 6);
  return { at: `${digits64(date, 4)}${digits64(time, 7)}${short}`, plain: true };
}

/** The version of a write with this stamp by a row at this version position. */
export function versionOf(stamp: unknown, pos: VersionPosition): string {
  return pos.plain && isPlainStamp(stamp) ? `${stamp}${SEP}${pos.at}` : `${NOT_PLAIN}${JSON.stringify(stamp)}${SEP}${pos.at}`;
}

/** True when the version's stamp is plain, so versions compare as plain strings. */
export function isPlainVersion(version: string): boolean {
  return version.charCodeAt(0) !== 0xffff;
}

/** The raw stamp a version was made of. */
export function stampOfVersion(version: string): unknown {
  // The first SEP: a plain stamp holds none, and JSON spells one as an escape; an id may hold any.
  const at = version.indexOf(SEP);
  return isPlainVersion(version) ? version.slice(0, at) : (JSON.parse(version.slice(1, at)) as unknown);
}

/**
 * The webapp's `a >= b`, exactly: strings compare by UTF-16 code units,
 * anything else through JavaScript's abstract relational comparison (a
 * numeric stamp against an ISO string compares as NaN: false). Stamps come
 * from JSON and the decoder refuses those that cannot become primitives
 * (wire.ts), so this never throws.
 */
export function jsGte(a: unknown, b: unknown): boolean {
  // The cast only quiets the type checker: the operator is applied to the values as they are.
  return (a as number) >= (b as number);
}

/**
 * True when a new write with version `next` wins over the stored `current`
 * (undefined: the field is absent, compared as the webapp does with '').
 * Versions of two plain stamps compare as strings, which for a row applied
 * after `current`'s equals `stamp >= storedStamp`, and for a row arriving
 * late is the order-independent (stamp, position) maximum; other stamps
 * compare as the webapp compares them.
 */
export function wins(next: string, current: string | undefined): boolean {
  if (current === undefined) return isPlainVersion(next) || jsGte(stampOfVersion(next), '');
  if (isPlainVersion(next) && isPlainVersion(current)) return next > current;
  return jsGte(stampOfVersion(next), stampOfVersion(current));
}
