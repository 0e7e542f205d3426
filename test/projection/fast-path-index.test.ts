/**
 * The fast-path index at start: found (however the operator named it),
 * missing (a warning and a 0 gauge), built CONCURRENTLY when
 * SYNC_CREATE_INDEX allows it and the role owns sync_changes, left alone
 * when the role does not; and the window query uses it once it is there.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createTestDb, type TestDb } from '../support/db.js';
import { createSql } from '../../src/db/pool.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { checkFastPathIndex, FAST_PATH_INDEX, fastPathIndexSql, type FastPathIndexDeps } from '../../src/projection/fast-path-index.js';
import { PROJECTED_TABLES_SQL } from '../../src/projection/change-source.js';

let db: TestDb;
let lines: { level: number; msg: string; statement?: string }[];
let registry: Registry;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

beforeEach(async () => {
  lines = [];
  registry = new Registry();
  await db.sql.unsafe(`DROP INDEX IF EXISTS ${FAST_PATH_INDEX}, ops_ai_idx`);
});

afterEach(async () => {
  await db.sql.unsafe(`DROP INDEX IF EXISTS ${FAST_PATH_INDEX}, ops_ai_idx`);
});

function deps(over: Partial<FastPathIndexDeps> = {}): FastPathIndexDeps {
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]);
      done();
    },
  });
  return { sql: db.sql, log: pino({ level: 'info' }, stream), registry, create: false, ...over };
}

async function gauge(): Promise<number | undefined> {
  const m = await registry.getSingleMetric('mana_ai_projection_fast_path_index')?.get();
  return m?.values[0]?.value;
}

async function indexValid(name: string): Promise<boolean | undefined> {
  const [row] = await db.sql<{ valid: boolean }[]>`
    SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ${name}`;
  return row?.valid;
}

describe('the fast-path index', () => {
  it('ships for operators as the statement the coordinator runs', () => {
    const file = readFileSync(new URL('../../src/db/sync-index.sql', import.meta.url), 'utf8');
    const statement = file.split('\n').filter((l) => !l.startsWith('--')).join('\n');
    expect(statement).toBe(fastPathIndexSql('public'));
    expect(fastPathIndexSql('mana sync')).toContain('ON "mana sync".sync_changes (created_at)');
  });

  it('SYNC_CREATE_INDEX is off unless set, and a bad value stops start', () => {
    expect(loadConfig({}).syncCreateIndex).toBe(false);
    expect(loadConfig({ SYNC_CREATE_INDEX: 'true' }).syncCreateIndex).toBe(true);
    expect(() => loadConfig({ SYNC_CREATE_INDEX: 'maybe' })).toThrow(ConfigError);
  });

  it('missing and not allowed: absent, gauge 0, one warning with the statement', async () => {
    const ix = await checkFastPathIndex(deps());
    await ix.settled();
    expect(ix.state()).toBe('absent');
    expect(await gauge()).toBe(0);
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.statement).toBe(fastPathIndexSql('public'));
    expect(await indexValid(FAST_PATH_INDEX)).toBeUndefined();
  });

  it('found under another name with its predicate spelled the other way round', async () => {
    await db.sql.unsafe(`CREATE INDEX ops_ai_idx ON sync_changes (created_at) WHERE table_name IN ('aiMissions', 'agents') AND app_id = 'ai'`);
    const ix = await checkFastPathIndex(deps({ create: true }));
    await ix.settled();
    expect(ix.state()).toBe('present');
    expect(await gauge()).toBe(1);
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
    expect(await indexValid(FAST_PATH_INDEX)).toBeUndefined();
  });

  it('an index on other rows does not count, nor the earlier one of aiMissions alone (the window reads agents too)', async () => {
    await db.sql.unsafe(`CREATE INDEX ops_ai_idx ON sync_changes (created_at) WHERE app_id = 'ai'`);
    expect((await checkFastPathIndex(deps())).state()).toBe('absent');
    await db.sql.unsafe(`DROP INDEX ops_ai_idx; CREATE INDEX ops_ai_idx ON sync_changes (created_at) WHERE app_id = 'ai' AND table_name = 'aiMissions'`);
    expect((await checkFastPathIndex(deps({ registry: new Registry() }))).state()).toBe('absent');
  });

  it('missing and allowed: built CONCURRENTLY, then present, and the window query uses it', async () => {
    await db.sql`
      INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, created_at)
      SELECT CASE WHEN g % 2 = 0 THEN 'ai' ELSE 'todo' END, CASE WHEN g % 2 = 1 THEN 'tasks' WHEN g % 10 = 0 THEN 'agents' ELSE 'aiMissions' END,
             'r' || (g % 500), 'u' || (g % 2000), 'update', '{}'::jsonb, 'device-1', now() - make_interval(secs => 20000 - g)
      FROM generate_series(1, 20000) g`;
    await db.sql`ANALYZE sync_changes`;
    const ix = await checkFastPathIndex(deps({ create: true }));
    expect(ix.state()).toBe('building');
    await ix.settled();
    expect(ix.state()).toBe('present');
    expect(await gauge()).toBe(1);
    expect(await indexValid(FAST_PATH_INDEX)).toBe(true);
    // The window query's predicate, as change-stream.ts spells it.
    const plan = await db.sql<{ 'QUERY PLAN': string }[]>`
      EXPLAIN SELECT id FROM sync_changes s
      WHERE s.app_id = 'ai' AND ${db.sql.unsafe(PROJECTED_TABLES_SQL)} AND s.created_at >= now() - interval '5 seconds'
        AND NOT (s.id = ANY('{}'::uuid[]))`;
    expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toContain(FAST_PATH_INDEX);
    await db.sql`DELETE FROM sync_changes`;
  });

  it('an invalid leftover of a failed build is dropped and built again', async () => {
    await db.sql.unsafe(fastPathIndexSql('public'));
    await db.sql`UPDATE pg_index SET indisvalid = false WHERE indexrelid = ${FAST_PATH_INDEX}::regclass`;
    expect(await indexValid(FAST_PATH_INDEX)).toBe(false);
    const absent = await checkFastPathIndex(deps());
    expect(absent.state()).toBe('absent');
    const ix = await checkFastPathIndex(deps({ create: true, registry: new Registry() }));
    await ix.settled();
    expect(ix.state()).toBe('present');
    expect(await indexValid(FAST_PATH_INDEX)).toBe(true);
  });

  it('allowed, but the role does not own sync_changes: absent, and the operator is told', async () => {
    const role = `fp_${db.name}`;
    await db.sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'fast-path' NOSUPERUSER`);
    const u = new URL(db.url);
    u.username = role;
    u.password = 'fast-path';
    const other = createSql(u.toString(), { max: 1 });
    try {
      const ix = await checkFastPathIndex(deps({ sql: other, create: true }));
      await ix.settled();
      expect(ix.state()).toBe('absent');
      expect(lines.filter((l) => l.level === 40).map((l) => l.msg).join('\n')).toContain('does not own sync_changes');
      expect(await indexValid(FAST_PATH_INDEX)).toBeUndefined();
    } finally {
      await other.end({ timeout: 5 });
      await db.sql.unsafe(`DROP ROLE ${role}`);
    }
  });
});
