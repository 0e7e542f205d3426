/**
 * The start-up grant checks (src/db/grants.ts) against a database set up as
 * production has it (docs/production-grants.sql), each case a setup an
 * operator could end up with where the old checks passed while access was
 * broken. Every case first shows the breakage as the login itself (a read
 * that sees too little, a SET ROLE refused, a write the policy does not
 * check, other sessions hidden), then that the check names it. Runs on the
 * embedded PostgreSQL 18 and on Debian's 15 (npm run test:pg15).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import postgres from 'postgres';
import { checkGrants, type GrantFinding } from '../../src/db/grants.js';
import { createManaSyncDb, LOGIN, SYNC_OWNER, type ManaSyncDb } from './mana-sync.js';

let db: ManaSyncDb;
let login: postgres.Sql;
let version: number;
const undo: string[] = [];

beforeAll(async () => {
  db = await createManaSyncDb(inject('pgAdminUrl'));
  login = postgres(db.loginUrl, { max: 1, onnotice: () => {} });
  const [v] = await db.admin<{ v: number }[]>`SELECT current_setting('server_version_num')::int AS v`;
  version = v!.v;
  await db.admin.begin(async (tx) => {
    for (const u of ['alice', 'bob']) {
      await tx`SELECT set_config('app.current_user_id', ${u}, true)`;
      await tx`INSERT INTO public.sync_changes (app_id, table_name, record_id, user_id, op, data, client_id) VALUES ('ai', 'aiMissions', 'm', ${u}, 'insert', '{}', 'grants-test')`;
    }
  });
}, 60_000);

afterEach(async () => {
  // Each case's own changes, undone in reverse; a fresh login session sees the roles as they are now.
  for (const stmt of undo.splice(0).reverse()) await db.admin.unsafe(stmt);
  await login.end({ timeout: 5 });
  login = postgres(db.loginUrl, { max: 1, onnotice: () => {} });
});

afterAll(async () => {
  await login?.end({ timeout: 5 });
  await db?.drop();
});

async function change(stmt: string, reverse: string): Promise<void> {
  await db.admin.unsafe(stmt);
  undo.push(reverse);
  await login.end({ timeout: 5 });
  login = postgres(db.loginUrl, { max: 1, onnotice: () => {} });
}

const findings = (): Promise<GrantFinding[]> =>
  checkGrants(login, { syncSchema: 'public', writerRole: 'mana_ai_writer', serverPlanning: true, syncTableCreatedLater: false });

/** Rows of sync_changes the login reads. */
async function visibleRows(): Promise<number> {
  const [row] = await login<{ n: number }[]>`SELECT count(*)::int AS n FROM public.sync_changes`;
  return row!.n;
}

/** Writes a row for `userId` as the writer role while acting for alice; true when it landed. */
async function writeAsAliceFor(userId: string): Promise<boolean> {
  try {
    await login.begin(async (tx) => {
      await tx`SELECT set_config('app.current_user_id', 'alice', true), set_config('role', 'mana_ai_writer', true)`;
      await tx`INSERT INTO public.sync_changes (app_id, table_name, record_id, user_id, op, data, client_id) VALUES ('ai', 'aiMissions', 'probe', ${userId}, 'update', '{}', 'grants-test')`;
      throw new Error('rollback');
    });
  } catch (err: unknown) {
    return (err as Error).message === 'rollback';
  }
  return true;
}

describe('as production has it', () => {
  it('nothing is missing: the login reads every row and the writer is checked by the policy', async () => {
    expect(await findings()).toEqual([]);
    expect(await visibleRows()).toBe(2);
    expect(await writeAsAliceFor('alice')).toBe(true);
    expect(await writeAsAliceFor('bob')).toBe(false);
  });
});

describe('checks that passed while access was broken', () => {
  it('a RESTRICTIVE policy beside the permissive read policy: rows are hidden, the read check says so', async () => {
    await change(`ALTER ROLE ${LOGIN} NOBYPASSRLS`, `ALTER ROLE ${LOGIN} BYPASSRLS`);
    await change(`CREATE POLICY mana_ai_read ON public.sync_changes FOR SELECT TO ${LOGIN} USING (true)`, 'DROP POLICY mana_ai_read ON public.sync_changes');
    // Control: the permissive policy alone opens every row, and the check accepts it.
    expect(await visibleRows()).toBe(2);
    expect(await findings()).toEqual([]);
    await change(
      `CREATE POLICY own_rows_only ON public.sync_changes AS RESTRICTIVE FOR SELECT TO PUBLIC USING (user_id = current_setting('app.current_user_id', true))`,
      'DROP POLICY own_rows_only ON public.sync_changes',
    );
    expect(await visibleRows()).toBe(0);
    expect(await findings()).toEqual([expect.objectContaining({ name: 'read-all-users', fatal: true, fix: `ALTER ROLE ${LOGIN} BYPASSRLS;` })]);
  });

  it('the writer membership without its SET option (PG 16+): SET ROLE is refused, the writer check says so', async () => {
    if (version < 160000) {
      // Before 16 a membership has no SET option: any member may SET ROLE, and the check (which
      // asks for 'SET' only from 16 on) runs here without an error and finds nothing.
      expect(await findings()).toEqual([]);
      return;
    }
    await change(`GRANT mana_ai_writer TO ${LOGIN} WITH SET FALSE`, `GRANT mana_ai_writer TO ${LOGIN} WITH SET TRUE`);
    await expect(login.unsafe('SET ROLE mana_ai_writer')).rejects.toMatchObject({ code: '42501' });
    expect(await findings()).toEqual([expect.objectContaining({ name: 'writer-role', fatal: true, fix: `GRANT mana_ai_writer TO ${LOGIN} WITH SET TRUE;` })]);
  });

  it('a writer that owns sync_changes without FORCE: the policy does not check its writes, the writer check says so', async () => {
    // Giving the table back folds the writer's own grant into the new owner's: granted again.
    await change('ALTER TABLE public.sync_changes OWNER TO mana_ai_writer', `ALTER TABLE public.sync_changes OWNER TO ${SYNC_OWNER}; GRANT INSERT ON public.sync_changes TO mana_ai_writer`);
    await change('ALTER TABLE public.sync_changes NO FORCE ROW LEVEL SECURITY', 'ALTER TABLE public.sync_changes FORCE ROW LEVEL SECURITY');
    expect(await writeAsAliceFor('bob')).toBe(true);
    expect(await findings()).toEqual([expect.objectContaining({ name: 'writer-role', fatal: true, fix: expect.stringContaining('ALTER TABLE public.sync_changes FORCE ROW LEVEL SECURITY;') })]);
  });

  it('pg_read_all_stats held only through a NOINHERIT membership: other sessions stay hidden, the check says so', async () => {
    const hidden = async () => {
      const [row] = await login<{ n: number }[]>`SELECT count(*) FILTER (WHERE query = '<insufficient privilege>')::int AS n FROM pg_stat_activity`;
      return row!.n;
    };
    // Control: with the grant in force, every session is visible (the database's own processes included).
    expect(await hidden()).toBe(0);
    // PG 16+ keeps INHERIT per membership (the role's attribute is only the default for new grants); before 16, per role.
    if (version >= 160000) await change(`GRANT pg_read_all_stats TO ${LOGIN} WITH INHERIT FALSE`, `GRANT pg_read_all_stats TO ${LOGIN} WITH INHERIT TRUE`);
    else await change(`ALTER ROLE ${LOGIN} NOINHERIT`, `ALTER ROLE ${LOGIN} INHERIT`);
    // Other roles' sessions (the admin's) are hidden again.
    expect(await hidden()).toBeGreaterThan(0);
    expect(await findings()).toEqual([expect.objectContaining({ name: 'read-all-stats', fatal: false, fix: `GRANT pg_read_all_stats TO ${LOGIN};` })]);
  });
});
