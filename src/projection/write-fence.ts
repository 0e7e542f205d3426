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
import { pipelinedTx } from '../db/pipelined-tx.js';

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

/** The text the fence's failure carries (an impossible cast), followed by the pass's status. */
const FENCED_OFF = 'mana_ai fenced off:';

/**
 * Runs `write` in a transaction of its own that commits only while the pass
 * `passXid` is in progress. Returns its result and the write's transaction
 * id (null when it wrote nothing), which the pass counts as its own.
 *
 * Two round trips (pipelined-tx.ts): BEGIN, the fence and the write's first
 * statement go out in one write, without waiting for the fence's answer;
 * the transaction id and COMMIT in another. `sql.begin` waited for BEGIN,
 * the fence, the write, the id and COMMIT one after the other: five round
 * trips for every chunk of an incremental pass's write-back. So the fence
 * cannot be judged here before the write runs: a pass that is not in
 * progress makes the fence's statement fail (a cast of a text that is no
 * boolean), which aborts the transaction, so the write behind it changes
 * nothing and the COMMIT rolls back.
 */
export async function fencedWrite<T>(sql: Sql, passXid: string, write: (tx: TxSql) => Promise<T>): Promise<{ result: T; xid: string | null }> {
  return pipelinedTx(sql, async (p) => {
    p.begin();
    const fence = p.send(p.tx`
      SELECT CASE WHEN status = 'in progress' THEN true ELSE (${FENCED_OFF} || coalesce(status, 'unknown'))::boolean END AS ok
      FROM (SELECT pg_xact_status(${passXid}::xid8) AS status
            FROM (SELECT pg_advisory_xact_lock_shared(hashtext(${WRITES_LOCK}))) AS held) AS f`);
    const written = write(p.tx);
    written.catch(() => undefined); // awaited below, once the fence has answered
    try {
      await fence;
    } catch (err: unknown) {
      const status = fencedOffStatus(err);
      if (status === null) throw err;
      throw new Error(`snapshot write-back fenced off: its refresh pass (transaction ${passXid}) is ${status}, expected in progress`);
    }
    const result = await written;
    const [own] = await p.commit(p.tx<{ xid: string | null }[]>`SELECT pg_current_xact_id_if_assigned()::text AS xid`);
    return { result, xid: own[0]?.xid ?? null };
  });
}

/** The pass status a failed fence reports, or null for any other error. */
function fencedOffStatus(err: unknown): string | null {
  const message = err instanceof Error ? err.message : '';
  const at = message.indexOf(FENCED_OFF);
  if (at === -1) return null;
  const rest = message.slice(at + FENCED_OFF.length);
  const end = rest.indexOf('"');
  return end === -1 ? rest : rest.slice(0, end);
}
