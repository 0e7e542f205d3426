/**
 * A database set up the way production has it: mana-sync's sync_changes
 * owned by mana-sync's own role, row-level security enabled and forced with
 * its per-user policy, then docs/production-grants.sql run by a superuser,
 * exactly as an operator would. Plus a snapshot of everything of mana-sync's
 * the coordinator must never change.
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { dbUrl } from '../support/db.js';

export const GRANTS_SQL = new URL('../../docs/production-grants.sql', import.meta.url);
export const LOGIN = 'mana_ai';
export const SYNC_OWNER = 'mana_sync_owner';

/**
 * mana-sync's table as its own migration creates it (docs/contract.md §1):
 * no field_timestamps, op CHECKed, client_id and schema_version NOT NULL,
 * the space index, RLS forced with both policies. One column is the test's
 * own: `written_by` defaults to current_user, so a test sees which role
 * inserted a row (the writer role, whose inserts RLS checks, or the login
 * itself).
 */
const MANA_SYNC_DDL = `
CREATE TABLE public.sync_changes (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  app_id text NOT NULL, table_name text NOT NULL, record_id text NOT NULL, user_id text NOT NULL,
  op text NOT NULL CHECK (op IN ('insert', 'update', 'delete')), data jsonb, field_meta jsonb DEFAULT '{}',
  client_id text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), schema_version int NOT NULL DEFAULT 1,
  actor jsonb, origin text, space_id text,
  written_by text NOT NULL DEFAULT current_user
);
CREATE INDEX sync_changes_user_app_created_idx ON public.sync_changes (user_id, app_id, created_at);
CREATE INDEX sync_changes_table_record_created_idx ON public.sync_changes (table_name, record_id, created_at);
CREATE INDEX sync_changes_user_app_table_created_idx ON public.sync_changes (user_id, app_id, table_name, created_at);
CREATE INDEX sync_changes_user_space_app_created_idx ON public.sync_changes (user_id, space_id, app_id, created_at) WHERE space_id IS NOT NULL;
ALTER TABLE public.sync_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sync_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_changes_user_isolation ON public.sync_changes
  USING (user_id = current_setting('app.current_user_id', true))
  WITH CHECK (user_id = current_setting('app.current_user_id', true));
CREATE POLICY sync_changes_space_member_read ON public.sync_changes FOR SELECT
  USING (space_id IS NOT NULL AND space_id = ANY(string_to_array(coalesce(current_setting('app.current_user_space_ids', true), ''), ',')));
ALTER TABLE public.sync_changes OWNER TO ${SYNC_OWNER};
`;

export interface ManaSyncDb {
  name: string;
  /** Superuser connection to the database (the test's view, RLS bypassed). */
  admin: postgres.Sql;
  /** The URL the coordinator logs in with: role mana_ai and its password. */
  loginUrl: string;
  /** Runs SQL as superuser on the cluster's maintenance database (roles are cluster-wide). */
  drop(): Promise<void>;
}

/** Creates `role` unless it exists; two test files may race for a cluster-wide role. */
async function ensureRole(sql: postgres.Sql, role: string, attrs: string): Promise<void> {
  await sql.unsafe(`DO $$ BEGIN CREATE ROLE ${role} ${attrs}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`);
}

/**
 * The roles of docs/production-grants.sql (mana_ai, mana_ai_writer) are
 * cluster-wide: a file that alters them, or resets the login's password,
 * would break another file's coordinator logging in at the same time. Each
 * database made here holds this lock (on the maintenance database, where
 * every file takes it) until it is dropped, so such files run one at a time.
 */
const ROLES_LOCK = 'mana-ai-test:production-roles';

export async function createManaSyncDb(adminUrl: string): Promise<ManaSyncDb> {
  const name = `prod_${randomBytes(4).toString('hex')}`;
  const cluster = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await cluster`SELECT pg_advisory_lock(hashtext(${ROLES_LOCK}))`;
  const url = dbUrl(adminUrl, name);
  const admin = postgres(url, { max: 2, onnotice: () => {} });
  const password = randomBytes(12).toString('hex');
  try {
    await cluster.unsafe(`CREATE DATABASE ${name}`);
    await ensureRole(cluster, SYNC_OWNER, 'NOLOGIN');
    await admin.unsafe(MANA_SYNC_DDL);
    // What an operator runs (docs/production-grants.sql), then the login's password.
    await admin.unsafe(readFileSync(GRANTS_SQL, 'utf8'));
    await admin.unsafe(`ALTER ROLE ${LOGIN} PASSWORD '${password}'`);
  } catch (err: unknown) {
    await admin.end({ timeout: 5 });
    await cluster.end();
    throw err;
  }
  const login = new URL(url);
  login.username = LOGIN;
  login.password = password;
  return {
    name,
    admin,
    loginUrl: login.toString(),
    async drop() {
      await admin.end({ timeout: 5 });
      await cluster.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      // Ending the session releases the lock.
      await cluster.end();
    },
  };
}

/**
 * Everything of mana-sync's the coordinator could change: every table named
 * sync_changes in any schema with its owner, RLS flags, ACL and columns, its
 * indexes, policies and triggers, and the roles' attributes.
 */
export async function manaSyncCatalog(sql: postgres.Sql): Promise<unknown> {
  const tables = await sql`
    SELECT n.nspname AS schema, pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity AS rls, c.relforcerowsecurity AS force,
      c.relacl::text AS acl,
      (SELECT json_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
      (SELECT json_agg(pg_get_indexdef(i.indexrelid) ORDER BY pg_get_indexdef(i.indexrelid)) FROM pg_index i WHERE i.indrelid = c.oid) AS indexes,
      (SELECT json_agg(json_build_object('name', p.polname, 'cmd', p.polcmd, 'roles', p.polroles::text,
         'qual', pg_get_expr(p.polqual, p.polrelid), 'check', pg_get_expr(p.polwithcheck, p.polrelid)) ORDER BY p.polname)
         FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
      (SELECT json_agg(pg_get_triggerdef(t.oid) ORDER BY t.tgname) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) AS triggers
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'sync_changes'
    ORDER BY n.nspname`;
  const roles = await sql`
    SELECT rolname, rolsuper, rolbypassrls, rolcanlogin,
      (SELECT array_agg(m.roleid::regrole::text ORDER BY m.roleid::regrole::text) FROM pg_auth_members m WHERE m.member = r.oid) AS member_of
    FROM pg_roles r WHERE rolname IN (${LOGIN}, 'mana_ai_writer', ${SYNC_OWNER}) ORDER BY rolname`;
  const schemaAcl = await sql`SELECT nspacl::text AS acl FROM pg_namespace WHERE nspname = 'public'`;
  return { tables, roles, schemaAcl };
}
