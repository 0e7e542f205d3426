/**
 * The stamps of views.ts in mana_ai.record_spaces (migration 0007): which
 * users stamped which real space on which record. A pass gets the stamps
 * of the spaces its rows name (carried by an incremental read's rows,
 * looked up for a bulk read's), learns new ones as it routes, and writes
 * them in its own transaction, so they commit with its cursor.
 */
import type { TxSql } from '../db/pool.js';
import { emptyStampBook, freshEntry, isRealSpace, routeRows, stampKey, type Routed, type RoutedRow, type Stamp, type StampEntry, type StoredStamps } from './views.js';
import type { Change } from './wire.js';

async function loadStamps(db: TxSql, keys: string[]): Promise<Stamp[]> {
  const parts = keys.map((k) => k.split('\u0000') as [string, string, string]);
  return db<Stamp[]>`
    SELECT r.table_name AS "tableName", r.record_id AS "recordId", r.space_id AS "spaceId", r.user_id AS "userId"
    FROM unnest(${parts.map((p) => p[0])}::text[], ${parts.map((p) => p[1])}::text[], ${parts.map((p) => p[2])}::text[]) AS k(t, r, s)
    JOIN mana_ai.record_spaces r ON r.table_name = k.t AND r.record_id = k.r AND r.space_id = k.s`;
}

async function saveStamps(tx: TxSql, stamps: Stamp[]): Promise<void> {
  for (let i = 0; i < stamps.length; i += 5000) {
    const chunk = stamps.slice(i, i + 5000);
    await tx`
      INSERT INTO mana_ai.record_spaces (table_name, record_id, space_id, user_id)
      SELECT * FROM unnest(${chunk.map((s) => s.tableName)}::text[], ${chunk.map((s) => s.recordId)}::text[],
                           ${chunk.map((s) => s.spaceId)}::text[], ${chunk.map((s) => s.userId)}::text[])
      ON CONFLICT DO NOTHING`;
  }
}

/** True when no stamp is stored yet (a cold start): there is nothing to load. */
export async function stampsEmpty(tx: TxSql): Promise<boolean> {
  const [row] = await tx<{ empty: boolean }[]>`SELECT NOT EXISTS (SELECT 1 FROM mana_ai.record_spaces) AS empty`;
  return Boolean(row?.empty);
}

export interface ViewRouter {
  /**
   * Routes a batch of rows to their views (views.ts routeRows), loading the
   * stamps it needs first, unless the read carried them (`stored`).
   */
  route(rows: RoutedRow[], changes: (Change | null)[], stored?: StoredStamps): Promise<Routed>;
  /**
   * Writes the stamps learned so far and forgets those of every record but
   * `keep` (the one a bulk read may still be reading), so memory stays
   * bounded; a later row of a forgotten record loads them again.
   */
  forget(keep?: { tableName: string; recordId: string }): Promise<void>;
}

/**
 * A pass's router. Stamps are loaded and written through the pass's own
 * transaction, so a load sees the stamps the pass wrote before it.
 */
export function createViewRouter(deps: {
  tx: TxSql;
  /** No stamp was stored when the pass began: nothing to load. */
  storeEmpty: boolean;
  /** Rows come grouped by record (a bulk read): a forgotten record's rows never come again, so its stamps need no load. */
  groupedByRecord: boolean;
}): ViewRouter {
  const book = emptyStampBook(deps.groupedByRecord);
  let learned: Stamp[] = [];
  let storeEmpty = deps.storeEmpty;
  /** Stamps this router wrote (ungrouped reads), by stampKey: invisible to a read that began before. */
  const writtenThisPass = new Map<string, Set<string>>();

  /** Stamped before this pass: its rows are not all here. */
  const storedStamp = (entry: StampEntry, userId: string) => {
    entry.users.add(userId);
    entry.changes = null;
  };

  async function route(rows: RoutedRow[], changes: (Change | null)[], stored?: StoredStamps): Promise<Routed> {
    // One walk over the rows makes the entries the book lacks: from what the read carried,
    // else loaded below. The webapp stamps a real space on most rows it writes now, so this
    // runs for most rows; listing the keys first and splitting each again cost more than the routing.
    let toLoad: string[] | undefined;
    let last: RoutedRow | undefined;
    for (const r of rows) {
      if (!isRealSpace(r.spaceId)) continue;
      // Rows of one record and space mostly come together (a bulk read): one key for the run.
      if (last !== undefined && last.spaceId === r.spaceId && last.recordId === r.recordId && last.tableName === r.tableName) continue;
      last = r;
      const k = stampKey(r.tableName, r.recordId, r.spaceId);
      if (book.entries.has(k)) continue;
      const entry = freshEntry(book, r.tableName, r.recordId);
      book.entries.set(k, entry);
      const carried = stored?.get(k);
      if (carried === undefined) {
        (toLoad ??= []).push(k);
        continue;
      }
      // The read's snapshot predates the stamps this pass wrote: those come from memory.
      for (const u of carried) storedStamp(entry, u);
      for (const u of writtenThisPass.get(k) ?? []) storedStamp(entry, u);
    }
    if (!storeEmpty && toLoad !== undefined) {
      for (const s of await loadStamps(deps.tx, toLoad)) storedStamp(book.entries.get(stampKey(s.tableName, s.recordId, s.spaceId))!, s.userId);
    }
    const routed = routeRows(rows, changes, book);
    learned.push(...routed.added);
    return routed;
  }

  async function forget(keep?: { tableName: string; recordId: string }): Promise<void> {
    const stamps = learned;
    learned = [];
    if (stamps.length > 0) {
      if (!deps.groupedByRecord) {
        storeEmpty = false;
        // A grouped read never sees a forgotten record again; another may, through a read that predates these.
        for (const st of stamps) {
          const k = stampKey(st.tableName, st.recordId, st.spaceId);
          const users = writtenThisPass.get(k);
          if (users) users.add(st.userId);
          else writtenThisPass.set(k, new Set([st.userId]));
        }
      }
      await saveStamps(deps.tx, stamps);
    }
    const kept = keep ? `${keep.tableName}\u0000${keep.recordId}\u0000` : undefined;
    for (const k of book.entries.keys()) if (kept === undefined || !k.startsWith(kept)) book.entries.delete(k);
    for (const k of book.holding.keys()) if (kept === undefined || `${k}\u0000` !== kept) book.holding.delete(k);
  }

  return { route, forget };
}
