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
 * position (created_at|id). For a *plain* stamp — a string whose UTF-16 code
 * units all lie in U+0002–U+D7FF — string order of versions is exactly
 * (stamp, position) order: the separator U+0001 sorts below every unit a
 * plain stamp may hold, so a stamp that is a prefix of another sorts first,
 * as it should; and Postgres' `COLLATE "C"` (UTF-8 bytes, i.e. code points)
 * orders plain versions as JavaScript orders UTF-16 units, which is not so
 * for units from U+D800 up (an astral character against U+E000–U+FFFF).
 * Any other stamp is kept as JSON behind U+FFFF, which no plain stamp
 * contains; records holding such a version are merged in JavaScript only.
 */

/** Separates the stamp from the position in a version; sorts below every unit of a plain stamp. */
const SEP = '\u0001';
/** Starts a version whose stamp is not plain (its JSON follows). */
const NOT_PLAIN = '\uFFFF';
const PLAIN = /^[\u0002-\uD7FF]*$/;

/** True for a string whose code units all lie in U+0002–U+D7FF (see above). */
export function isPlainStamp(stamp: unknown): stamp is string {
  return typeof stamp === 'string' && PLAIN.test(stamp);
}

/** The version of a write with this stamp at this position ("created_at|id", ASCII). */
export function versionOf(stamp: unknown, pos: string): string {
  return isPlainStamp(stamp) ? `${stamp}${SEP}${pos}` : `${NOT_PLAIN}${JSON.stringify(stamp)}${SEP}${pos}`;
}

/** True when the version's stamp is plain, so versions compare as plain strings. */
export function isPlainVersion(version: string): boolean {
  return version.charCodeAt(0) !== 0xffff;
}

/** The raw stamp a version was made of. */
export function stampOfVersion(version: string): unknown {
  const at = version.lastIndexOf(SEP);
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
