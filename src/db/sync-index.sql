-- For the operator of mana-sync's database: the projection's fast path.
-- A partial index on the change log that finds the recent rows of the
-- tables the coordinator projects (aiMissions and agents of app ai)
-- directly, so a projection pass costs the same whatever the number of
-- users or rows. Without it the coordinator works, but each pass that
-- cannot rule out new rows (on a busy database: most) queries the log
-- through an index led by user_id, which grows with the users.
--
-- Run it as the owner of sync_changes, outside a transaction (psql -f). Its
-- schema is public here; use SYNC_SCHEMA's value where sync_changes lives
-- elsewhere. CONCURRENTLY: writers are not blocked while it builds. A build
-- that fails leaves an INVALID index: drop it and run this again. The
-- coordinator builds it itself at start when SYNC_CREATE_INDEX=true and its
-- role owns the table.
--
-- It replaces sync_changes_ai_missions_created_idx (aiMissions only), which
-- the window query no longer uses since agents are projected too; once this
-- one is built, that one may be dropped:
--   DROP INDEX CONCURRENTLY IF EXISTS public.sync_changes_ai_missions_created_idx;
CREATE INDEX CONCURRENTLY IF NOT EXISTS sync_changes_ai_projection_created_idx
  ON public.sync_changes (created_at)
  WHERE app_id = 'ai' AND table_name IN ('aiMissions', 'agents');
