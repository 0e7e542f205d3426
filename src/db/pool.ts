/**
 * The postgres.js pool. Bounded, with short idle and connect timeouts so an
 * outage shows quickly and the pool recovers by itself when the database is
 * back (postgres.js reconnects lazily per query).
 */
import postgres from 'postgres';

/**
 * Seconds before a connection retries after a failed connect. postgres.js's
 * default grows 3^n/100 s up to 20 s, counting failures across the pool: a
 * pass every second ran it to the cap within seconds of an outage, queries
 * (and /ready) then waited up to 20 s on a connection in backoff, and
 * reconnecting after the database came back took as long. Capped at ~1 s.
 */
export function reconnectBackoff(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** retries, 1);
}

export type Sql = postgres.Sql;
export type TxSql = postgres.TransactionSql;

export function createSql(url: string, opts: { max: number; appName?: string }): Sql {
  return postgres(url, {
    max: opts.max,
    idle_timeout: 30,
    connect_timeout: 5,
    max_lifetime: 60 * 30,
    backoff: reconnectBackoff,
    onnotice: () => {},
    connection: { application_name: opts.appName ?? 'mana-ai' },
  });
}

/**
 * Runs fn in a transaction scoped to one user for row-level security:
 * sync_changes' forced policy compares user_id to app.current_user_id.
 */
export async function withUser<T>(
  sql: Sql,
  userId: string,
  fn: (tx: TxSql) => Promise<T>,
  opts: { role?: string } = {},
): Promise<T> {
  return (await sql.begin(async (tx) => {
    await tx`SELECT set_config('app.current_user_id', ${userId}, true)`;
    // A role with BYPASSRLS (or a superuser) would skip the policy; writing
    // as a plain role keeps the policy in force for our own writes.
    if (opts.role) await tx.unsafe(`SET LOCAL ROLE "${opts.role.replace(/"/g, '""')}"`);
    return fn(tx);
  })) as T;
}
