/**
 * Whose rows make up a record, for each user (docs/contract.md §1, "Spaces").
 *
 * mana-sync gives a device of user U the rows of U and the rows whose
 * space_id is one of U's spaces; memberships live in mana-auth, out of our
 * sight. The webapp stamps every row of a record with the record's spaceId
 * (null on old rows, then the sentinel `_personal:<user>`, later the real
 * id), so one record's rows carry several space ids over time, and a record
 * of a shared space has rows of several members.
 *
 * So records are kept per viewing user: the *view* of record R by user V
 * holds V's rows of R, and the rows of R by others whose space_id is a real
 * space (not null, not empty, not a `_personal:` sentinel) that V has
 * stamped on a row of R itself — the one evidence of membership the log
 * gives: a member editing a space's record stamps that space. A stranger
 * who knows a record id cannot get rows into V's view without a space V
 * stamped (and then V's own devices receive them too). Only the view whose
 * record names its viewer as author is due (due-rule.ts).
 *
 * A pass learns stamps as it reads rows (`routeRows`): each row joins its
 * writer's view and the views of the others who stamped its space on the
 * record; a user's first stamp of a space others already stamped brings
 * their earlier rows into its view — from memory when the pass read all of
 * them, else by a rebuild of that view from the log.
 */
import type { Change } from './wire.js';

const SENTINEL = '_personal:';

/** True for a space id that names a real space (membership), not a placeholder. */
export function isRealSpace(spaceId: string | null | undefined): spaceId is string {
  return typeof spaceId === 'string' && spaceId !== '' && !spaceId.startsWith(SENTINEL);
}

/** The key of one view in a pass: table, viewer, record. */
export const viewKey = (tableName: string, userId: string, recordId: string): string => `${tableName}\u0000${userId}\u0000${recordId}`;

export function splitViewKey(key: string): { tableName: string; userId: string; recordId: string } {
  const a = key.indexOf('\u0000');
  const b = key.indexOf('\u0000', a + 1);
  return { tableName: key.slice(0, a), userId: key.slice(a + 1, b), recordId: key.slice(b + 1) };
}

/** One user's stamp of a space on a record. */
export interface Stamp {
  tableName: string;
  recordId: string;
  spaceId: string;
  userId: string;
}

export const stampKey = (tableName: string, recordId: string, spaceId: string): string => `${tableName}\u0000${recordId}\u0000${spaceId}`;

/** The users stored as stamping each (table, record, space) key (stampKey) when a read began, as the read carried them. */
export type StoredStamps = Map<string, string[]>;

/** What a pass knows of one (table, record, space): who stamped it, and its rows, when the pass holds all of them. */
export interface StampEntry {
  users: Set<string>;
  /**
   * Every change of the record in this space, when each of them came in
   * this pass (no stamp of it was stored before): a user's first row in the
   * space then takes the others' rows from here instead of a rebuild from
   * the log. Null when some came earlier, or the pass keeps too many.
   */
  changes: Change[] | null;
}

/** Who stamped each (table, record, space), as far as a pass knows: every key it routes must be loaded first. */
export interface StampBook {
  entries: Map<string, StampEntry>;
  /**
   * Rows come grouped by record (a bulk read): the book holds the changes of
   * the record being read only, and lets them go when the next one starts
   * (held longer, they would outlive the young generation). Otherwise it
   * holds none, and a view that gains a space others stamped is rebuilt.
   */
  grouped: boolean;
  /** The record being read. */
  current: { tableName: string; recordId: string } | null;
  /** The entries holding changes, by record. */
  holding: Map<string, StampEntry[]>;
}

export function emptyStampBook(grouped: boolean): StampBook {
  return { entries: new Map(), grouped, current: null, holding: new Map() };
}

/** A new entry for a key of this record no stamp was stored for: it holds the changes when the book does. */
export function freshEntry(book: StampBook, tableName: string, recordId: string): StampEntry {
  const entry: StampEntry = { users: new Set(), changes: book.grouped ? [] : null };
  if (book.grouped) {
    const record = `${tableName}\u0000${recordId}`;
    const list = book.holding.get(record);
    if (list) list.push(entry);
    else book.holding.set(record, [entry]);
  }
  return entry;
}

/** In a grouped book, a row of another record: the previous one is complete, its changes go. */
function enterRecord(book: StampBook, tableName: string, recordId: string): void {
  const current = book.current;
  if (!book.grouped || (current !== null && current.recordId === recordId && current.tableName === tableName)) return;
  if (current !== null) {
    const record = `${current.tableName}\u0000${current.recordId}`;
    for (const e of book.holding.get(record) ?? []) e.changes = null;
    book.holding.delete(record);
  }
  book.current = { tableName, recordId };
}

/** The part of a row routing needs (a row that decodes to nothing still stamps its space). */
export interface RoutedRow {
  tableName: string;
  userId: string;
  recordId: string;
  spaceId: string | null;
}

export interface Routed {
  /** Each view's changes, in arrival order. */
  byKey: Map<string, Change[]>;
  /** Views that gained a space others had stamped before this pass: to rebuild from the log. */
  rebuild: Set<string>;
  /** Stamps learned from these rows. */
  added: Stamp[];
}

/**
 * Routes rows, in arrival order, to the views they belong to, adding their
 * stamps to the book. `changes[i]` is row i decoded (null: it does nothing).
 * A user's first row in a space others stamped brings their rows into its
 * view: from the book when it holds them all, else by a rebuild.
 */
export function routeRows(rows: RoutedRow[], changes: (Change | null)[], book: StampBook): Routed {
  const byKey = new Map<string, Change[]>();
  const rebuild = new Set<string>();
  const added: Stamp[] = [];
  const push = (key: string, c: Change) => {
    const list = byKey.get(key);
    if (list) list.push(c);
    else byKey.set(key, [c]);
  };
  // The keys of the previous row, reused while rows of one view and space follow each other.
  let prev: RoutedRow | undefined;
  let prevView = '';
  let prevEntry: StampEntry | undefined;
  rows.forEach((row, i) => {
    const { tableName, userId, recordId, spaceId } = row;
    const change = changes[i];
    const sameView = prev !== undefined && prev.userId === userId && prev.recordId === recordId && prev.tableName === tableName;
    const own = sameView ? prevView : viewKey(tableName, userId, recordId);
    let entry: StampEntry | undefined;
    if (isRealSpace(spaceId)) {
      enterRecord(book, tableName, recordId);
      if (sameView && prev!.spaceId === spaceId && prevEntry) {
        entry = prevEntry;
      } else {
        const k = stampKey(tableName, recordId, spaceId);
        entry = book.entries.get(k);
        if (!entry) book.entries.set(k, (entry = freshEntry(book, tableName, recordId)));
      }
      if (!entry.users.has(userId)) {
        if (entry.users.size > 0) {
          if (entry.changes) for (const earlier of entry.changes) push(own, earlier);
          else rebuild.add(own);
        }
        entry.users.add(userId);
        added.push({ tableName, recordId, spaceId, userId });
      }
      if (change) entry.changes?.push(change);
    }
    prev = row;
    prevView = own;
    prevEntry = entry;
    if (!change) return;
    push(own, change);
    if (entry && entry.users.size > 1) for (const other of entry.users) if (other !== userId) push(viewKey(tableName, other, recordId), change);
  });
  return { byKey, rebuild, added };
}
