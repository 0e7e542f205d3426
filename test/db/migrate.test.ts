/**
 * Migrations apply by id, not in one rising sequence: a database that ran a
 * higher-numbered migration before a lower one shipped (two lines of work
 * merged after both numbered theirs) gets the lower one at its next boot, and
 * is not reported migrated until then.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { listMigrations, migrate, migrationsComplete } from '../../src/db/migrate.js';
import { createTestDb, type TestDb } from '../support/db.js';

const SHIPPED = fileURLToPath(new URL('../../src/db/migrations/', import.meta.url));
const silent = pino({ level: 'silent' });
let db: TestDb;
let older: string;
/** Migrations the older build lacks: 0007, and those numbered after it landed. */
const LATER = (id: number): boolean => id === 7 || id >= 14;

beforeAll(async () => {
  db = await createTestDb({ migrate: false });
  // The build before the lower migration landed: every shipped file but 0007, and but those
  // written after it landed (from 0014 on, which build on its columns).
  older = mkdtempSync(join(tmpdir(), 'mana-ai-migrations-'));
  for (const m of listMigrations(SHIPPED)) if (!LATER(m.id)) copyFileSync(join(SHIPPED, m.name), join(older, m.name));
});

afterAll(async () => {
  await db?.drop();
  if (older) rmSync(older, { recursive: true, force: true });
});

it('applies a lower-numbered migration to a database that already ran higher ones, and is complete only then', async () => {
  const shipped = listMigrations(SHIPPED);
  expect(shipped.some((m) => m.id === 7)).toBe(true);
  expect(shipped.some((m) => m.id > 7)).toBe(true);

  await migrate(db.sql, silent, { devSyncChanges: true, dir: older });
  expect(await migrationsComplete(db.sql, older)).toBe(true);
  expect(await migrationsComplete(db.sql, SHIPPED)).toBe(false);
  const [before] = await db.sql`SELECT to_regclass('mana_ai.agent_snapshots') AS t`;
  expect(before!['t']).toBeNull();

  expect(await migrate(db.sql, silent, { devSyncChanges: true, dir: SHIPPED })).toBe(shipped.filter((m) => LATER(m.id)).length);
  expect(await migrationsComplete(db.sql, SHIPPED)).toBe(true);
  const [after] = await db.sql`SELECT to_regclass('mana_ai.agent_snapshots') AS t`;
  expect(after!['t']).not.toBeNull();
  const ids = await db.sql<{ id: number }[]>`SELECT id FROM mana_ai.schema_migrations ORDER BY id`;
  expect(ids.map((r) => r.id)).toEqual(shipped.map((m) => m.id));
});
