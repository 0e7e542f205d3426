/**
 * Which missions the webapp's runner would run (docs/contract.md §1, "Due"),
 * as the columns the due scan indexes. The runner lists missions through
 * Dexie's `createdAt` index, newest first, and keeps those that are not
 * deleted (`!deletedAt`), `state === 'active'`, and whose `nextRunAt` is a
 * string `<=` the current `new Date().toISOString()`, compared as strings.
 * Of a record shared in a space only its author's view is due (views.ts).
 *
 * The due scan needs an instant to index: dueInstant(nextRunAt) is the
 * earliest instant whose toISOString() is `>=` the string, so "due at t"
 * is `dueInstant <= t` exactly, for any string a device may have written
 * (`…:00Z` falls due a second later than `…:00.500Z`, as on the device).
 * Settling ("nextRunAt moved past dueAt") compares the same column.
 */

/** The earliest instant stored (now is never before it). */
const FIRST_ISO = '0001-01-01T00:00:00.000Z';
/** After it toISOString() starts with '+' and sorts before every date: no later instant is due sooner. */
const LAST_ISO = '9999-12-31T23:59:59.999Z';
const FIRST_MS = Date.parse(FIRST_ISO);
const LAST_MS = Date.parse(LAST_ISO);
const ISO_SHAPE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The projection's canonical instant text (microseconds, what timestamptz keeps). */
function canonical(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 23)}000Z`;
}

/**
 * The earliest instant t (milliseconds, as a device's clock has them) with
 * `new Date(t).toISOString() >= nextRunAt`, as canonical text; null when
 * no instant a device can reach qualifies. Instants before year 1 are
 * clamped to its start.
 */
export function dueInstant(nextRunAt: string): string | null {
  if (nextRunAt <= FIRST_ISO) return canonical(FIRST_MS);
  if (nextRunAt > LAST_ISO) return null;
  // What devices write: toISOString() itself, which is its own answer.
  if (ISO_SHAPE.test(nextRunAt)) {
    const ms = Date.parse(nextRunAt);
    if (Number.isFinite(ms) && new Date(ms).toISOString() === nextRunAt) return canonical(ms);
  }
  // toISOString() is monotonic over years 1–9999: the least qualifying instant by bisection.
  let lo = FIRST_MS; // iso(lo) < nextRunAt
  let hi = LAST_MS; // iso(hi) >= nextRunAt
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (new Date(mid).toISOString() >= nextRunAt) hi = mid;
    else lo = mid;
  }
  return canonical(hi);
}

/**
 * True when IndexedDB can index the value, so Dexie's `createdAt` index (the
 * runner's listing) includes the record: a string, a number, or an array of
 * such keys. JSON has no NaN, dates or binary keys.
 */
export function isIndexableKey(value: unknown, depth = 0): boolean {
  if (typeof value === 'string' || typeof value === 'number') return true;
  if (!Array.isArray(value) || depth > 100) return false;
  return value.every((v) => isIndexableKey(v, depth + 1));
}

/** The snapshot columns read off a view's record (both projected tables have them). */
export interface DerivedColumns {
  /** deletedAt is truthy (JavaScript's truthiness of the JSON value). */
  soft_deleted: boolean;
  state: string | null;
  next_run_at: string | null;
  /** createdAt is an indexable key. */
  listed: boolean;
  /** authorId when a non-empty string, else who made the record present. */
  author: string | null;
  /** The record's spaceId when a string (the write-back stamps it on its row). */
  space_id: string | null;
}

/** The record fields the derived columns come from. */
export const DERIVED_FIELDS = ['state', 'nextRunAt', 'deletedAt', 'createdAt', 'authorId', 'spaceId'] as const;

/** The author a view's record names: authorId when a non-empty string, else `firstUser`. */
export function authorOf(authorId: unknown, firstUser: string | null): string | null {
  return typeof authorId === 'string' && authorId !== '' ? authorId : firstUser;
}

/** The derived columns of a present record, from its fields' values (`value(k)`: undefined when absent). */
export function derivedOf(value: (k: (typeof DERIVED_FIELDS)[number]) => unknown, firstUser: string | null): DerivedColumns {
  const state = value('state');
  const nextRunAt = value('nextRunAt');
  const spaceId = value('spaceId');
  return {
    soft_deleted: Boolean(value('deletedAt')),
    state: typeof state === 'string' ? state : null,
    next_run_at: typeof nextRunAt === 'string' ? dueInstant(nextRunAt) : null,
    listed: isIndexableKey(value('createdAt')),
    author: authorOf(value('authorId'), firstUser),
    space_id: typeof spaceId === 'string' ? spaceId : null,
  };
}

/** The derived columns of an absent record. */
export const ABSENT: DerivedColumns = { soft_deleted: false, state: null, next_run_at: null, listed: false, author: null, space_id: null };
