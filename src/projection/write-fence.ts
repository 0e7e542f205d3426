/**
 * Snapshot write-backs outside the pass's own transaction, fenced so that
 * none can land after its pass has ended.
 *
 * An incremental pass writes its snapshots on other connections of the pool,
 * several at once, each committing on its own: a pass that fails afterwards
 * leaves snapshots ahead of the cursor, and the next pass merely applies
 * those rows again (applying a row is idempotent, lww.ts). What must never
 * happen is a write of a pass that has died landing under the next pass,
 * which has loaded the records before it and would write over it. Two rules
 * exclude that:
 * - a fenced write checks, holding a shared advisory lock, that its pass's
 *   transaction is still in progress, and keeps that lock until it commits;
 * - a pass, once it holds the refresh lock and before it loads anything,
 *   takes the same lock exclusively for a moment (`waitForFencedWrites`), so
 *   every write that passed its check under an earlier pass has committed or
 *   rolled back by then, and any later one finds its pass ended.
 */
import type { Sql, TxSql } from '../db/pool.js';

const WRITES_LOCK = 'mana_ai:projection:writes';

/**
 * Waits until no fenced write is in progress, and returns this transaction's
 * id (assigned here if it was not yet), which its fenced writes check. Only
 * while this transaction holds the advisory lock `passLock` (its pass's):
 * null, without waiting, when another one does, so the statement can be
 * sent before the answer to the lock is in.
 */
export async function waitForFencedWrites(tx: TxSql, passLock: string): Promise<string | null> {
  // Session-level, taken and released in one statement: held only while it waits. Taking
  // an advisory lock this transaction holds again succeeds at once (it is re-entrant).
  const [row] = await tx<{ xid: string }[]>`
    SELECT pg_current_xact_id()::text AS xid, pg_advisory_unlock(hashtext(${WRITES_LOCK})) AS released
    FROM (SELECT pg_advisory_lock(hashtext(${WRITES_LOCK})) WHERE pg_try_advisory_xact_lock(hashtext(${passLock}))) AS waited`;
  return row?.xid ?? null;
}

/**
 * Runs `write` in a transaction of its own that commits only while the pass
 * `passXid` is in progress. Returns its result and the write's transaction
 * id (null when it wrote nothing), which the pass counts as its own.
 */
export async function fencedWrite<T>(sql: Sql, passXid: string, write: (tx: TxSql) => Promise<T>): Promise<{ result: T; xid: string | null }> {
  return sql.begin(async (tx) => {
    const [fence] = await tx<{ status: string | null }[]>`
      SELECT pg_xact_status(${passXid}::xid8) AS status
      FROM (SELECT pg_advisory_xact_lock_shared(hashtext(${WRITES_LOCK}))) AS held`;
    if (fence?.status !== 'in progress') {
      throw new Error(`snapshot write-back fenced off: its refresh pass (transaction ${passXid}) is ${fence?.status ?? 'unknown'}, expected in progress`);
    }
    const result = await write(tx);
    const [own] = await tx<{ xid: string | null }[]>`SELECT pg_current_xact_id_if_assigned()::text AS xid`;
    return { result, xid: own?.xid ?? null };
  });
}
