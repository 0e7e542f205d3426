/**
 * The least privileges the coordinator needs (docs/production-grants.sql),
 * checked at start from the catalogs, before anything is created. A missing
 * grant that would make it silently wrong stops the start; one that only
 * degrades it is logged and reported by /ready. Each finding names the
 * statement that fixes it.
 */
import type { Sql } from './pool.js';

export interface GrantFinding {
  /** Stable name, reported by /ready. */
  name: 'sync-table' | 'sync-schema-usage' | 'sync-select' | 'read-all-users' | 'read-all-stats' | 'writer-role' | 'own-schema';
  /** true: the start stops; false: it runs degraded. */
  fatal: boolean;
  /** What is missing and what it breaks, in one clause. */
  problem: string;
  /** The SQL an operator runs to fix it. */
  fix: string;
}

export interface GrantCheckOptions {
  syncSchema: string;
  writerRole: string;
  /** Server planning writes as the writer role: without it, a missing writer is fatal. */
  serverPlanning: boolean;
  /** Dev mode creates sync_changes during migration: its absence now is not a finding. */
  syncTableCreatedLater: boolean;
}

/** A role or schema name as it must be spelled in a statement. */
export function ident(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

interface Facts {
  login: string;
  db: string;
  super: boolean;
  bypass: boolean;
  readStats: boolean;
  ownSchemaExists: boolean;
  ownSchemaOk: boolean;
  dbCreate: boolean;
  schemaExists: boolean;
  schemaUsage: boolean;
  tableExists: boolean;
  select: boolean;
  rls: boolean;
  force: boolean;
  owner: boolean;
  readPolicy: boolean;
  /** A RESTRICTIVE read policy applies to the login: it filters rows whatever the permissive ones allow. */
  restrictiveRead: boolean;
  writerExists: boolean;
  writerMember: boolean;
  /** The login may SET ROLE to the writer (PG 16+: the membership's SET option; before 16 any membership). */
  writerSet: boolean;
  writerBypass: boolean;
  writerInsert: boolean;
  /** The writer has its table owner's privileges and RLS is not forced: the policy does not check its writes. */
  writerOwnsUnforced: boolean;
}

/**
 * One catalog query; every privilege function is guarded so a missing object
 * reads as false, not an error. A privilege held through a role counts only
 * when it is in force without SET ROLE (pg_has_role … 'USAGE', which follows
 * INHERIT): a NOINHERIT membership makes the login a member (and lets it SET
 * ROLE) but gives it none of the role's privileges, and row-level security
 * matches a policy's roles the same way.
 */
async function readFacts(sql: Sql, opts: GrantCheckOptions): Promise<Facts> {
  const [f] = await sql<Facts[]>`
    WITH me AS (SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user),
    ns AS (SELECT oid FROM pg_namespace WHERE nspname = ${opts.syncSchema}),
    own AS (SELECT oid FROM pg_namespace WHERE nspname = 'mana_ai'),
    t AS (SELECT c.oid, c.relowner, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
          WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relname = 'sync_changes' AND c.relkind IN ('r', 'p')),
    w AS (SELECT oid, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ${opts.writerRole})
    SELECT current_user AS login, current_database() AS db,
      (SELECT rolsuper FROM me) AS super, (SELECT rolbypassrls FROM me) AS bypass,
      (SELECT rolsuper FROM me) OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS "readStats",
      EXISTS (SELECT 1 FROM own) AS "ownSchemaExists",
      coalesce((SELECT has_schema_privilege(oid, 'CREATE') AND has_schema_privilege(oid, 'USAGE') FROM own), false) AS "ownSchemaOk",
      has_database_privilege(current_database(), 'CREATE') AS "dbCreate",
      EXISTS (SELECT 1 FROM ns) AS "schemaExists",
      coalesce((SELECT has_schema_privilege(oid, 'USAGE') FROM ns), false) AS "schemaUsage",
      EXISTS (SELECT 1 FROM t) AS "tableExists",
      coalesce((SELECT has_table_privilege(oid, 'SELECT') FROM t), false) AS select,
      coalesce((SELECT relrowsecurity FROM t), false) AS rls,
      coalesce((SELECT relforcerowsecurity FROM t), false) AS force,
      coalesce((SELECT pg_has_role(relowner, 'USAGE') FROM t), false) AS owner,
      EXISTS (SELECT 1 FROM pg_policy p, t WHERE p.polrelid = t.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
              AND pg_get_expr(p.polqual, p.polrelid) = 'true'
              AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE pg_has_role(r, 'USAGE')))) AS "readPolicy",
      EXISTS (SELECT 1 FROM pg_policy p, t WHERE p.polrelid = t.oid AND NOT p.polpermissive AND p.polcmd IN ('r', '*')
              AND pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM 'true'
              AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE pg_has_role(r, 'USAGE')))) AS "restrictiveRead",
      EXISTS (SELECT 1 FROM w) AS "writerExists",
      coalesce((SELECT pg_has_role(oid, 'MEMBER') FROM w), false) AS "writerMember",
      -- 'SET' is a privilege name only from PG 16 on (15 would reject it); before, a member may always SET ROLE.
      coalesce((SELECT CASE WHEN current_setting('server_version_num')::int >= 160000 THEN pg_has_role(oid, 'SET') ELSE pg_has_role(oid, 'MEMBER') END FROM w), false) AS "writerSet",
      coalesce((SELECT rolsuper OR rolbypassrls FROM w), false) AS "writerBypass",
      coalesce((SELECT has_table_privilege(w.oid, t.oid, 'INSERT') AND has_schema_privilege(w.oid, (SELECT oid FROM ns), 'USAGE') FROM w, t), false) AS "writerInsert",
      coalesce((SELECT pg_has_role(w.oid, t.relowner, 'USAGE') AND NOT t.relforcerowsecurity FROM w, t), false) AS "writerOwnsUnforced"`;
  return f!;
}

/** Every grant missing for this login, fatal ones first. */
export async function checkGrants(sql: Sql, opts: GrantCheckOptions): Promise<GrantFinding[]> {
  return findingsOf(await readFacts(sql, opts), opts).sort((a, b) => Number(b.fatal) - Number(a.fatal));
}

function findingsOf(f: Facts, opts: GrantCheckOptions): GrantFinding[] {
  const out: GrantFinding[] = [];
  const me = ident(f.login);
  const schema = ident(opts.syncSchema);
  const table = `${schema}.sync_changes`;
  const writer = ident(opts.writerRole);
  if (!f.ownSchemaExists ? !f.dbCreate : !f.ownSchemaOk) {
    out.push({
      name: 'own-schema',
      fatal: true,
      problem: `role ${me} cannot create its tables in schema mana_ai`,
      fix: f.ownSchemaExists ? `GRANT USAGE, CREATE ON SCHEMA mana_ai TO ${me};` : `CREATE SCHEMA mana_ai AUTHORIZATION ${me};`,
    });
  }
  if (!f.tableExists) {
    if (!opts.syncTableCreatedLater) {
      out.push({
        name: 'sync-table',
        fatal: true,
        problem: `mana-sync's table ${table} does not exist in database ${f.db}`,
        fix: `-- point SYNC_DATABASE_URL at mana-sync's database, or set SYNC_SCHEMA to the schema holding sync_changes`,
      });
    }
    return out;
  }
  if (!f.schemaUsage) out.push({ name: 'sync-schema-usage', fatal: true, problem: `role ${me} cannot use schema ${schema}`, fix: `GRANT USAGE ON SCHEMA ${schema} TO ${me};` });
  if (!f.select) out.push({ name: 'sync-select', fatal: true, problem: `role ${me} cannot read ${table}`, fix: `GRANT SELECT ON ${table} TO ${me};` });
  // A permissive read policy opens every row only while no restrictive one filters them again.
  const readsAll = f.super || f.bypass || !f.rls || (f.owner && !f.force) || (f.readPolicy && !f.restrictiveRead);
  if (!readsAll) {
    out.push({
      name: 'read-all-users',
      fatal: true,
      problem: `row-level security hides other users' rows of ${table} from role ${me}, so no mission would ever be seen`,
      fix: `ALTER ROLE ${me} BYPASSRLS;`,
    });
  }
  if (!f.readStats) {
    out.push({
      name: 'read-all-stats',
      fatal: false,
      problem: `role ${me} cannot see other sessions' transactions, so the projection's horizon cannot advance (it still applies every row, remembering more ids)`,
      fix: `GRANT pg_read_all_stats TO ${me};`,
    });
  }
  const writerIssue = writerFinding(f, { me, writer, schema, table });
  if (writerIssue) out.push({ name: 'writer-role', fatal: opts.serverPlanning, ...writerIssue });
  return out;
}

/** What keeps the writer role from writing as the user under row-level security, and its fix. */
function writerFinding(f: Facts, n: { me: string; writer: string; schema: string; table: string }): { problem: string; fix: string } | undefined {
  const cannot = `server plans are written as role ${n.writer} so row-level security applies, and ${n.me} cannot write as it`;
  if (!f.writerExists) {
    return {
      problem: cannot,
      fix: `CREATE ROLE ${n.writer} NOLOGIN NOBYPASSRLS; GRANT ${n.writer} TO ${n.me}; GRANT USAGE ON SCHEMA ${n.schema} TO ${n.writer}; GRANT INSERT ON ${n.table} TO ${n.writer};`,
    };
  }
  if (!f.writerMember) return { problem: cannot, fix: `GRANT ${n.writer} TO ${n.me};` };
  // PG 16+: a membership granted WITH SET FALSE; SET ROLE is refused.
  if (!f.writerSet) return { problem: cannot, fix: `GRANT ${n.writer} TO ${n.me} WITH SET TRUE;` };
  if (!f.writerInsert) return { problem: cannot, fix: `GRANT USAGE ON SCHEMA ${n.schema} TO ${n.writer}; GRANT INSERT ON ${n.table} TO ${n.writer};` };
  const unchecked = `server plans are written as role ${n.writer} so row-level security checks each row's user, and it does not:`;
  if (f.writerBypass) return { problem: `${unchecked} the role bypasses it`, fix: `ALTER ROLE ${n.writer} NOSUPERUSER NOBYPASSRLS;` };
  if (f.writerOwnsUnforced) {
    return {
      problem: `${unchecked} the role owns ${n.table} (or has its owner's privileges) and row-level security is not forced`,
      fix: `ALTER TABLE ${n.table} FORCE ROW LEVEL SECURITY; (as the table's owner) or set SYNC_WRITER_ROLE to a role that does not own it`,
    };
  }
  return undefined;
}

/** The one line a finding is reported as. */
export function findingLine(f: GrantFinding): string {
  return `${f.problem}: run ${f.fix}`;
}
