/**
 * The database of a projection suite, with or without the fast-path index
 * (src/db/sync-index.sql). A suite runs both ways: as itself, and through
 * its `*.indexed.test.ts` twin, which imports `./with-fast-path-index.js`
 * first. With the index, sequential scans are off in that database, so even
 * the tests' small tables are read through it, as a big log would be.
 */
import { createTestDb, type TestDb } from '../support/db.js';
import { createSql } from '../../src/db/pool.js';
import { FAST_PATH_INDEX, fastPathIndexSql } from '../../src/projection/fast-path-index.js';
import { PROJECTED_TABLES_SQL } from '../../src/projection/change-source.js';

let indexed = false;

/** Makes every createProjectionDb of this test file build the fast-path index. */
export function useFastPathIndex(): void {
  indexed = true;
}

export async function createProjectionDb(): Promise<TestDb> {
  const db = await createTestDb({ acceptRowsManaSyncRefuses: true });
  if (!indexed) return db;
  await db.sql.unsafe(fastPathIndexSql('public'));
  await db.sql.unsafe(`ALTER DATABASE ${db.name} SET enable_seqscan = off`);
  // Connections opened before the ALTER keep the old setting: a new pool.
  await db.sql.end({ timeout: 5 });
  const sql = createSql(db.url, { max: 10 });
  const plan = await sql<{ 'QUERY PLAN': string }[]>`
    EXPLAIN SELECT id FROM sync_changes s
    WHERE s.app_id = 'ai' AND ${sql.unsafe(PROJECTED_TABLES_SQL)} AND s.created_at >= now() AND NOT (s.id = ANY('{}'::uuid[]))`;
  if (!plan.some((r) => r['QUERY PLAN'].includes(FAST_PATH_INDEX))) {
    throw new Error(`expected the window query to use ${FAST_PATH_INDEX}, got:\n${plan.map((r) => r['QUERY PLAN']).join('\n')}`);
  }
  return {
    ...db,
    sql,
    async drop() {
      await sql.end({ timeout: 5 });
      await db.drop();
    },
  };
}
