/**
 * The planner's statistics of the tables a bulk pass rewrote.
 *
 * A bulk pass (a cold catch-up, a backlog after downtime) writes its views
 * in one transaction that may last minutes. An autovacuum ANALYZE that runs
 * meanwhile counts none of those rows (they are not committed yet) but
 * sees the pages they fill, so it records the table as empty. The planner
 * then thinks the snapshot table holds one row, and each merge statement of
 * the passes that follow (merge-deltas.ts) hashes the whole table instead of
 * looking up its 250 views by key: on the bench's 10,000 views, about
 * 90 ms instead of 25 ms per statement, spilling to temporary files, until
 * autovacuum analyzes the table again (a minute or more). An ANALYZE right
 * after the pass commits gives the planner the rows as they are.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { PROJECTED_TABLES } from './tables.js';

/** The tables a pass writes in bulk: the snapshot tables and the stamps (record-spaces.ts). */
export const BULK_WRITTEN_TABLES: readonly string[] = [...PROJECTED_TABLES.map((t) => t.snapshots), 'mana_ai.record_spaces'];

/**
 * How long the ANALYZE waits for its lock: a VACUUM holds the same one, and
 * an anti-wraparound VACUUM of a big table, which does not give way, would
 * otherwise hold up every pass behind this one for as long as it runs.
 */
export const ANALYZE_LOCK_TIMEOUT_MS = 2000;

/**
 * ANALYZEs the tables a bulk pass wrote, once it has committed. A failure
 * (its lock timed out, say) is logged, not thrown: the pass has landed, and
 * autovacuum analyzes the tables in time.
 */
export async function analyzeAfterBulk(sql: Sql, log: Logger): Promise<void> {
  try {
    await sql.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL lock_timeout = ${ANALYZE_LOCK_TIMEOUT_MS}`);
      await tx.unsafe(`ANALYZE ${BULK_WRITTEN_TABLES.join(', ')}`);
    });
  } catch (err: unknown) {
    log.warn({ err, tables: BULK_WRITTEN_TABLES }, 'projection: ANALYZE after a bulk pass failed; the planner keeps older statistics until autovacuum analyzes these tables');
  }
}
