/**
 * The postgres.js pool. Bounded, with short idle and connect timeouts so an
 * outage shows quickly and the pool recovers by itself when the database is
 * back (postgres.js reconnects lazily per query).
 */
import postgres from 'postgres';

export type Sql = postgres.Sql;
export type TxSql = postgres.TransactionSql;

export function createSql(url: string, opts: { max: number; appName?: string }): Sql {
  return postgres(url, {
    max: opts.max,
    idle_timeout: 30,
    connect_timeout: 5,
    max_lifetime: 60 * 30,
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
