/**
 * The projection's fast path: a partial index on mana-sync's change log
 * that finds the recent rows of the projected tables (tables.ts:
 * aiMissions and agents) directly.
 *
 * Without it, the window query ("projected rows at or above the horizon")
 * can only use sync_changes' own indexes, each of which leads with user_id
 * or record_id, so a pass that cannot rule out new rows costs one index
 * descent per user, or a scan of the table once there are many users: it
 * grows with the database. With it, the same query reads the index's tail,
 * whatever the number of users or rows. The pass is correct either way.
 * One index over both tables' predicate: the window query names both, so
 * the second table costs no second search (an index of aiMissions alone,
 * the earlier statement, no longer serves it).
 *
 * sync_changes belongs to mana-sync, so the index is the operator's to add
 * (src/db/sync-index.sql). At start the coordinator looks for it: present,
 * it says so in a gauge; absent, it logs a warning with the statement, and,
 * when SYNC_CREATE_INDEX allows it and this role owns the table, builds it
 * itself, CONCURRENTLY (writers are never blocked), in the background.
 */
import { Gauge, type Registry } from 'prom-client';
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { PROJECTED_TABLES_SQL } from './change-source.js';
import { PROJECTED_TABLES } from './tables.js';

export const FAST_PATH_INDEX = 'sync_changes_ai_projection_created_idx';

/** The statement that builds the index, for the schema that holds sync_changes (src/db/sync-index.sql spells it for `public`). */
export function fastPathIndexSql(schema = 'public'): string {
  const table = `${quoteIdent(schema)}.sync_changes`;
  return `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${FAST_PATH_INDEX}\n  ON ${table} (created_at)\n  WHERE app_id = 'ai' AND ${PROJECTED_TABLES_SQL.replace('s.', '')};\n`;
}

/** An identifier as SQL spells it: bare when it needs no quotes. */
function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

export type FastPathState = 'present' | 'absent' | 'building';

interface IndexRow {
  name: string;
  valid: boolean;
}

/** The predicate as Postgres prints it, without parentheses and spaces, for either order of its two terms. */
const PREDICATES = (() => {
  const app = "app_id='ai'::text";
  const tables = `table_name=ANYARRAY[${PROJECTED_TABLES.map((t) => `'${t.tableName}'::text`).join(',')}]`;
  return [`${app}AND${tables}`, `${tables}AND${app}`];
})();

/**
 * The indexes of schema.sync_changes that serve the fast path: created_at
 * first, and a predicate that holds app_id = 'ai' and table_name IN the
 * projected tables and nothing else (an operator may name it otherwise).
 */
async function findIndexes(sql: Sql, schema: string): Promise<IndexRow[]> {
  return sql<IndexRow[]>`
    SELECT ic.relname AS name, i.indisvalid AND i.indisready AS valid
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
    WHERE n.nspname = ${schema} AND t.relname = 'sync_changes' AND a.attname = 'created_at'
      AND i.indexprs IS NULL
      AND regexp_replace(pg_get_expr(i.indpred, i.indrelid), '[()\\s]', '', 'g')
          = ANY(${PREDICATES}::text[])`;
}

/** True when this role may build an index on sync_changes (it owns the table, directly or through a role). */
async function mayCreate(sql: Sql, schema: string): Promise<boolean> {
  const [row] = await sql<{ ok: boolean }[]>`
    SELECT pg_has_role(current_user, t.relowner, 'USAGE') AS ok
    FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = ${schema} AND t.relname = 'sync_changes'`;
  return Boolean(row?.ok);
}

export interface FastPathIndexDeps {
  sql: Sql;
  log: Logger;
  registry: Registry;
  /** SYNC_CREATE_INDEX: build the index when it is missing. */
  create: boolean;
  /** The schema that holds sync_changes. */
  schema?: string;
  /** Say a missing index at info, not warn: dev mode's own small sync_changes, where a warning would only alarm a newcomer. */
  quiet?: boolean;
}

export interface FastPathIndex {
  /** What the start found, or what a build made of it. */
  state(): FastPathState;
  /** Resolves when a build started at start has ended (at once when none did). */
  settled(): Promise<void>;
  /** Cancels a build in progress (its invalid leftover is rebuilt at the next start that may). */
  stop(): Promise<void>;
}

/** Looks for the index, reports it, and starts building it when allowed and missing. */
export async function checkFastPathIndex(deps: FastPathIndexDeps): Promise<FastPathIndex> {
  const { sql, log } = deps;
  const schema = deps.schema ?? 'public';
  const gauge = new Gauge({
    name: 'mana_ai_projection_fast_path_index',
    help: `1 when sync_changes has the projection's partial index (${FAST_PATH_INDEX}); 0: every busy pass costs a query that grows with users`,
    registers: [deps.registry],
  });
  let state: FastPathState = 'absent';
  let build: { done: Promise<void>; cancel: () => void } | undefined;
  const set = (s: FastPathState) => {
    state = s;
    gauge.set(s === 'present' ? 1 : 0);
  };

  const found = await findIndexes(sql, schema);
  if (found.some((ix) => ix.valid)) {
    set('present');
  } else if (!deps.create) {
    set('absent');
    (deps.quiet ? log.info.bind(log) : log.warn.bind(log))(
      { index: FAST_PATH_INDEX, statement: fastPathIndexSql(schema) },
      'sync_changes has no fast-path index: busy projection passes grow with users and log size; add it (src/db/sync-index.sql) or set SYNC_CREATE_INDEX=true',
    );
  } else if (!(await mayCreate(sql, schema))) {
    set('absent');
    log.warn(
      { index: FAST_PATH_INDEX, statement: fastPathIndexSql(schema) },
      'SYNC_CREATE_INDEX is set but this role does not own sync_changes: the operator must add the fast-path index (src/db/sync-index.sql)',
    );
  } else {
    set('building');
    build = startBuild(found.map((ix) => ix.name));
  }

  /** Drops an invalid leftover of an earlier build of ours, then builds; both CONCURRENTLY, outside any transaction. */
  function startBuild(invalid: string[]): { done: Promise<void>; cancel: () => void } {
    let current: { cancel(): void } | undefined;
    let cancelled = false;
    const run = async (text: string) => {
      if (cancelled) throw new Error('cancelled');
      const q = sql.unsafe(text);
      current = q;
      await q;
    };
    const started = performance.now();
    log.info({ index: FAST_PATH_INDEX }, 'building the fast-path index on sync_changes (CONCURRENTLY; writers are not blocked)');
    const done = (async () => {
      try {
        for (const name of invalid.filter((n) => n === FAST_PATH_INDEX)) await run(`DROP INDEX CONCURRENTLY IF EXISTS ${quoteIdent(schema)}.${quoteIdent(name)}`);
        await run(fastPathIndexSql(schema));
        set('present');
        log.info({ index: FAST_PATH_INDEX, ms: Math.round(performance.now() - started) }, 'fast-path index built');
      } catch (err: unknown) {
        set('absent');
        if (!cancelled) log.warn({ err, index: FAST_PATH_INDEX, statement: fastPathIndexSql(schema) }, 'building the fast-path index failed; the projection stays correct without it');
      }
    })();
    return {
      done,
      cancel() {
        cancelled = true;
        current?.cancel();
      },
    };
  }

  return {
    state: () => state,
    settled: async () => {
      await build?.done;
    },
    async stop() {
      build?.cancel();
      await build?.done;
    },
  };
}
