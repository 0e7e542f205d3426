/**
 * The dev-mode sync_changes (src/db/dev-sync-changes.sql) is mana-sync's
 * table as mana-sync's own migration creates it (docs/contract.md §1): its
 * columns and types, which of them are NOT NULL, the CHECK on op, its
 * indexes, row-level security enabled and forced, and both policies (each
 * user reads and writes their own rows; members of a space read its rows,
 * but write only as themselves). Plus one column of older deployments,
 * field_timestamps, and nothing else.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import type { TxSql } from '../../src/db/pool.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

/** mana-sync's columns: name → [type, NOT NULL]. */
const MANA_SYNC_COLUMNS: Record<string, [string, boolean]> = {
  id: ['uuid', true],
  app_id: ['text', true],
  table_name: ['text', true],
  record_id: ['text', true],
  user_id: ['text', true],
  op: ['text', true],
  data: ['jsonb', false],
  field_meta: ['jsonb', false],
  client_id: ['text', true],
  created_at: ['timestamp with time zone', true],
  schema_version: ['integer', true],
  actor: ['jsonb', false],
  origin: ['text', false],
  space_id: ['text', false],
};

describe('the dev sync_changes', () => {
  it("has mana-sync's columns, types and NOT NULLs, plus the older field_timestamps", async () => {
    const rows = await db.sql<{ name: string; type: string; notNull: boolean }[]>`
      SELECT column_name AS name, data_type AS type, is_nullable = 'NO' AS "notNull"
      FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'sync_changes'`;
    const got = Object.fromEntries(rows.map((r) => [r.name, [r.type, r.notNull]]));
    expect(got).toEqual({ ...MANA_SYNC_COLUMNS, field_timestamps: ['jsonb', false] });
  });

  it('refuses an op outside insert, update, delete, and a NULL client_id, as mana-sync does', async () => {
    const insert = (op: string, clientId: string | null) =>
      db.sql`INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id) VALUES ('ai', 'aiMissions', 'r', 'u', ${op}, '{}'::jsonb, ${clientId})`.then(
        () => 'ok',
        (e: { code?: string }) => e.code,
      );
    expect(await insert('upsert', 'c')).toBe('23514');
    expect(await insert('update', null)).toBe('23502');
    expect(await insert('update', 'c')).toBe('ok');
    const [row] = await db.sql<{ schemaVersion: number }[]>`SELECT schema_version AS "schemaVersion" FROM sync_changes WHERE record_id = 'r'`;
    expect(row!.schemaVersion).toBe(1);
  });

  it("has mana-sync's indexes, the space one partial", async () => {
    const rows = await db.sql<{ def: string }[]>`SELECT indexdef AS def FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'sync_changes'`;
    const shapes = rows.map((r) => r.def.replace(/^.*USING btree /, '')).sort();
    expect(shapes).toEqual(
      [
        '(id)',
        '(table_name, record_id, created_at)',
        '(user_id, app_id, created_at)',
        '(user_id, app_id, table_name, created_at)',
        '(user_id, space_id, app_id, created_at) WHERE (space_id IS NOT NULL)',
      ].sort(),
    );
  });

  it('has row-level security enabled and forced, with the user policy and the space members’ read policy', async () => {
    const [rls] = await db.sql<{ enabled: boolean; forced: boolean }[]>`
      SELECT relrowsecurity AS enabled, relforcerowsecurity AS forced FROM pg_class WHERE oid = 'public.sync_changes'::regclass`;
    expect(rls).toEqual({ enabled: true, forced: true });
    const policies = await db.sql<{ name: string; cmd: string; permissive: string; withCheck: string | null }[]>`
      SELECT policyname AS name, cmd, permissive, with_check AS "withCheck" FROM pg_policies WHERE tablename = 'sync_changes' ORDER BY policyname`;
    expect(policies.map((p) => [p.name, p.cmd, p.permissive, p.withCheck !== null])).toEqual([
      ['sync_changes_space_member_read', 'SELECT', 'PERMISSIVE', false],
      ['sync_changes_user_isolation', 'ALL', 'PERMISSIVE', true],
    ]);
  });

  it('a member reads their own rows and their spaces’ rows, and writes only as themselves', async () => {
    await db.sql`
      INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, space_id) VALUES
        ('ai', 'aiMissions', 'mine', 'bob', 'insert', '{}', 'c', NULL),
        ('ai', 'aiMissions', 'shared', 'alice', 'insert', '{}', 'c', 'space-1'),
        ('ai', 'aiMissions', 'other', 'alice', 'insert', '{}', 'c', 'space-2'),
        ('ai', 'aiMissions', 'private', 'alice', 'insert', '{}', 'c', NULL)`;
    const asBob = async <T>(fn: (tx: TxSql) => Promise<T>): Promise<T> =>
      (await db.sql.begin(async (tx) => {
        await tx`SELECT set_config('app.current_user_id', 'bob', true), set_config('app.current_user_space_ids', 'space-1', true), set_config('role', 'mana_ai_writer', true)`;
        return fn(tx);
      })) as T;
    const seen = await asBob((tx) => tx<{ r: string }[]>`SELECT record_id AS r FROM sync_changes WHERE record_id IN ('mine', 'shared', 'other', 'private') ORDER BY 1`);
    expect(seen.map((x) => x.r)).toEqual(['mine', 'shared']);
    const write = await asBob((tx) => tx`INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, space_id) VALUES ('ai', 'aiMissions', 'shared', 'alice', 'update', '{}', 'c', 'space-1')`).then(
      () => 'ok',
      (e: { code?: string }) => e.code,
    );
    expect(write).toBe('42501');
  });
});
