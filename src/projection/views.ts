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
 * A pass learns stamps as it reads rows (`route`): each row joins its
 * writer's view and the views of the others who stamped its space on the
 * record; a user's first stamp of a space others already stamped brings
 * their earlier rows into its view, so that view is rebuilt from the log.
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

/** Who stamped each (table, record, space), as far as a pass knows: every key it routes must be loaded first. */
export type StampBook = Map<string, Set<string>>;

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
  /** Views that gained a space others had stamped: to rebuild from the log. */
  rebuild: Set<string>;
  /** Stamps learned from these rows. */
  added: Stamp[];
}

/** The stamp keys these rows need loaded before they are routed. */
export function stampKeysOf(rows: RoutedRow[]): string[] {
  const keys = new Set<string>();
  for (const r of rows) if (isRealSpace(r.spaceId)) keys.add(stampKey(r.tableName, r.recordId, r.spaceId));
  return [...keys];
}

/**
 * Routes rows, in arrival order, to the views they belong to, adding their
 * stamps to the book. `changes[i]` is row i decoded (null: it does nothing).
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
  rows.forEach((row, i) => {
    const { tableName, userId, recordId, spaceId } = row;
    let stampers: Set<string> | undefined;
    if (isRealSpace(spaceId)) {
      const k = stampKey(tableName, recordId, spaceId);
      stampers = book.get(k);
      if (!stampers) book.set(k, (stampers = new Set()));
      if (!stampers.has(userId)) {
        if (stampers.size > 0) rebuild.add(viewKey(tableName, userId, recordId));
        stampers.add(userId);
        added.push({ tableName, recordId, spaceId, userId });
      }
    }
    const change = changes[i];
    if (!change) return;
    push(viewKey(tableName, userId, recordId), change);
    if (stampers) for (const other of stampers) if (other !== userId) push(viewKey(tableName, other, recordId), change);
  });
  return { byKey, rebuild, added };
}
