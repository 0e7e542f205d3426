/**
 * A fresh database per test file on the run's Postgres, migrated like the
 * dev default (sync_changes included), dropped afterwards.
 */
import { inject } from 'vitest';
import postgres from 'postgres';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { createSql, type Sql } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';

export interface TestDb {
  url: string;
  name: string;
  sql: Sql;
  drop(): Promise<void>;
}

export function dbUrl(adminUrl: string, name: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

export interface TestDbOptions {
  migrate?: boolean;
  poolMax?: number;
  /**
   * Lets sync_changes take rows mana-sync's own table refuses (an op outside
   * its CHECK, a NULL client_id): for the tests that prove the coordinator
   * survives such rows anyway, as on a deployment whose table lacks those
   * constraints. Every other test runs on the table as mana-sync creates it.
   */
  acceptRowsManaSyncRefuses?: boolean;
}

export async function createTestDb(opts: TestDbOptions = {}): Promise<TestDb> {
  const adminUrl = inject('pgAdminUrl');
  const name = `t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = dbUrl(adminUrl, name);
  const sql = createSql(url, { max: opts.poolMax ?? 10 });
  if (opts.migrate !== false) await migrate(sql, pino({ level: 'silent' }), { devSyncChanges: true });
  if (opts.acceptRowsManaSyncRefuses) await sql.unsafe('ALTER TABLE sync_changes DROP CONSTRAINT sync_changes_op_check, ALTER COLUMN client_id DROP NOT NULL');
  return {
    url,
    name,
    sql,
    async drop() {
      await sql.end({ timeout: 5 });
      const a = postgres(adminUrl, { max: 1, onnotice: () => {} });
      await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
