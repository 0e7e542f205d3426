-- Least privileges for the mana-ai coordinator on mana-sync's database.
--
-- Run once as a superuser, connected to mana-sync's database:
--   psql "postgres://postgres@db/mana_sync" -v ON_ERROR_STOP=1 -f docs/production-grants.sql
-- then give the login a password:  \password mana_ai
--
-- Names used below (change them here and in the environment together):
--   mana_ai         the coordinator's login role (SYNC_DATABASE_URL's user)
--   mana_ai_writer  the role per-user writes switch to (SYNC_WRITER_ROLE)
--   public          the schema of mana-sync's sync_changes (SYNC_SCHEMA)
--   mana_ai         the coordinator's own schema (always this name)
--
-- The coordinator checks every one of these at start. A missing one stops
-- the start with one line naming the statement to run; pg_read_all_stats
-- only degrades it (logged, and named by GET /ready). Running this file
-- again changes nothing. Nothing here alters mana-sync's table beyond
-- granting access to it.

-- 1. The login. BYPASSRLS: sync_changes has row-level security forced, and
--    the coordinator reads every user's missions. (Instead of BYPASSRLS, an
--    operator may add a read policy to mana-sync's table:
--    CREATE POLICY mana_ai_read ON public.sync_changes FOR SELECT TO mana_ai USING (true);)
DO $$
BEGIN
  CREATE ROLE mana_ai LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS;
EXCEPTION WHEN duplicate_object THEN
  ALTER ROLE mana_ai LOGIN BYPASSRLS;
END $$;

-- 2. Other sessions' transaction start times (pg_stat_activity): the
--    projection never reads past a transaction that is still open.
GRANT pg_read_all_stats TO mana_ai;

-- 3. Read the change log.
GRANT USAGE ON SCHEMA public TO mana_ai;
GRANT SELECT ON public.sync_changes TO mana_ai;

-- 4. Server plans are written as the user, under the RLS policy: the
--    coordinator switches to this plain role (no BYPASSRLS) for each write.
DO $$
BEGIN
  CREATE ROLE mana_ai_writer NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END $$;
GRANT mana_ai_writer TO mana_ai;
GRANT USAGE ON SCHEMA public TO mana_ai_writer;
GRANT INSERT ON public.sync_changes TO mana_ai_writer;

-- 5. The coordinator's own tables live in schema mana_ai, owned by it.
--    (Alternatively: GRANT CREATE ON DATABASE mana_sync TO mana_ai; and the
--    coordinator creates the schema itself.)
CREATE SCHEMA IF NOT EXISTS mana_ai AUTHORIZATION mana_ai;

-- 6. Recommended, run by the OWNER of sync_changes (not by mana_ai): the
--    projection's fast-path index, so a busy pass costs the same at any
--    number of users and rows. Without it the coordinator stays correct,
--    warns at start and sets mana_ai_projection_fast_path_index to 0.
--    The statement is src/db/sync-index.sql (CONCURRENTLY cannot run inside
--    a transaction block, so run that file on its own with psql -f).
--    With SYNC_CREATE_INDEX=true and a login role that owns sync_changes,
--    the coordinator builds it itself; that is the only change it ever
--    makes to mana-sync's table, and only when that setting asks for it.
