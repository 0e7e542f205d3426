/**
 * A transaction on one reserved connection whose statements go out in as
 * few writes as its logic allows. `sql.begin` sends BEGIN alone and waits
 * for it, then each statement its callback awaits, then COMMIT alone: a
 * round trip, and a write system call, each. Here BEGIN rides with the
 * first statements and COMMIT with the last, and statements issued in the
 * same tick share one write (postgres.js coalesces them and pipelines them
 * on the connection; Postgres still runs them one after the other, each
 * seeing what the ones before it did). Socket writes are the largest item
 * of the server planner's CPU, so its hot transactions use this; so do the
 * projection's fenced write-backs (write-fence.ts), which a pass waits for.
 *
 * A statement that fails aborts the transaction: the COMMIT sent with it
 * then ends it as a rollback, and the failed statement's error is thrown.
 */
import type postgres from 'postgres';
import type { Sql, TxSql } from './pool.js';

export interface PipelinedTx {
  /** The reserved connection. Statements not awaited yet go out together with the next ones. */
  sql: postgres.ReservedSql;
  /** The same connection typed for helpers written against a transaction (they only run statements). */
  tx: TxSql;
  /** Sends BEGIN; it goes out with the statements issued in the same tick. */
  begin(): void;
  /**
   * Sends a statement now, behind those sent before it. (A postgres.js query
   * is sent when its then() is called; Promise.all calls it a microtask
   * later, so statements handed to Promise.all go out behind any sent
   * directly in the meantime, e.g. a COMMIT.)
   */
  send<T>(statement: PromiseLike<T>): Promise<T>;
  /**
   * Awaits these statements and a COMMIT sent behind them, all in one write.
   * If one fails, the transaction rolls back and its error is thrown.
   */
  commit<T extends readonly unknown[]>(...statements: { [K in keyof T]: PromiseLike<T[K]> }): Promise<T>;
}

const ignore = (): void => {};

/**
 * Runs `fn` with a connection of its own. A transaction `fn` began and did
 * not commit (it returned early, or threw) is rolled back before the
 * connection goes back to the pool.
 */
export async function pipelinedTx<R>(sql: Sql, fn: (p: PipelinedTx) => Promise<R>): Promise<R> {
  const conn = await sql.reserve();
  let begun: Promise<unknown> | null = null;
  let open = false;
  const p: PipelinedTx = {
    sql: conn,
    tx: conn as unknown as TxSql,
    begin() {
      if (open) throw new Error('pipelinedTx: BEGIN sent twice in one transaction');
      open = true;
      // Sent now (then() sends a postgres.js query); its failure is reported by commit().
      begun = conn.unsafe('BEGIN').then((r) => r);
      begun.catch(ignore);
    },
    send(statement) {
      return Promise.resolve(statement.then((v) => v));
    },
    async commit(...statements) {
      if (!open || !begun) throw new Error('pipelinedTx: COMMIT without BEGIN');
      // The statements are sent first, in order, then COMMIT behind them. A helper that awaits
      // its query inside an async function sends it a microtask or two later: COMMIT waits for
      // the next turn of the event loop, which still comes before postgres.js flushes the buffer
      // (its own setImmediate is queued behind this one), so all of it remains one write.
      const all = Promise.all(statements.map((st) => p.send(st)));
      all.catch(ignore);
      await new Promise<void>((resolve) => setImmediate(resolve));
      const commit = conn.unsafe('COMMIT').then((r) => r);
      commit.catch(ignore);
      try {
        const results = await all;
        await begun;
        await commit;
        return results as never;
      } finally {
        // Committed, or (a statement failed) ended by the COMMIT as a rollback.
        await commit.catch(ignore);
        open = false;
      }
    },
  };
  try {
    return await fn(p);
  } finally {
    if (open) await conn.unsafe('ROLLBACK').catch(ignore);
    conn.release();
  }
}
