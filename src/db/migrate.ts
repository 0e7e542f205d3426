/**
 * Numbered SQL migrations for schema mana_ai, run at boot. Each runs in its
 * own transaction under an advisory lock, with its id recorded in the same
 * transaction, so two instances booting at once apply each exactly once.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from './pool.js';
import type { Logger } from '../log.js';
import { DEFAULT_SYNC_SCHEMA } from './sync-table.js';

const here = dirname(fileURLToPath(import.meta.url));
const MIGRATIONS_DIR = join(here, 'migrations');
const LOCK = 'mana_ai:migrate';

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => ({ id: Number(f.slice(0, 4)), name: f, sql: readFileSync(join(dir, f), 'utf8') }));
}

/** The dev-mode DDL of sync_changes in `schema` (quoted; it is a validated identifier). */
export function devSyncChangesSql(schema: string = DEFAULT_SYNC_SCHEMA): string {
  return readFileSync(join(here, 'dev-sync-changes.sql'), 'utf8').replaceAll('{{schema}}', `"${schema.replace(/"/g, '""')}"`);
}

/**
 * Applies pending migrations. `devSyncChanges` (dev mode only) also creates
 * mana-sync's table in `syncSchema`; otherwise nothing outside schema
 * mana_ai is created or altered.
 */
export async function migrate(sql: Sql, log: Logger, opts: { devSyncChanges: boolean; syncSchema?: string; dir?: string }): Promise<number> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext(${LOCK}))`;
    // CREATE SCHEMA IF NOT EXISTS checks the database's CREATE privilege even
    // when the schema exists: an operator's pre-created schema must do.
    const [schema] = await tx`SELECT to_regnamespace('mana_ai') AS oid`;
    if (!schema?.['oid']) await tx`CREATE SCHEMA mana_ai`;
    await tx`CREATE TABLE IF NOT EXISTS mana_ai.schema_migrations (
      id int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
    if (opts.devSyncChanges) await tx.unsafe(devSyncChangesSql(opts.syncSchema));
  });
  let applied = 0;
  // Every migration not yet recorded runs, whatever its number: a branch's
  // migration that landed after higher-numbered ones still gets applied.
  for (const m of listMigrations(opts.dir)) {
    const ran = await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtext(${LOCK}))`;
      const inserted = await tx`
        INSERT INTO mana_ai.schema_migrations (id, name) VALUES (${m.id}, ${m.name})
        ON CONFLICT (id) DO NOTHING RETURNING id`;
      if (inserted.length === 0) return false;
      await tx.unsafe(m.sql);
      return true;
    });
    if (ran) {
      applied++;
      log.info({ migration: m.name }, 'migration applied');
    }
  }
  return applied;
}

/**
 * True when every migration shipped with this build has been applied. Each
 * id is checked, not the highest: a database that ran a higher-numbered
 * migration first may still lack a lower one.
 */
export async function migrationsComplete(sql: Sql, dir = MIGRATIONS_DIR): Promise<boolean> {
  const ids = listMigrations(dir).map((m) => m.id);
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.schema_migrations WHERE id = ANY(${ids}::int[])`;
  return (row?.n ?? 0) === ids.length;
}
