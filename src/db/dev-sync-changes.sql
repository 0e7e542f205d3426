-- Dev mode ONLY (the embedded database or DEV_MODE=1): mana-sync's change
-- log as mana-sync itself creates it (docs/contract.md §1: its columns,
-- NOT NULLs, op CHECK, indexes, RLS enabled and forced, both policies) and
-- as docs/production-grants.sql expects it, so a fresh machine works.
-- {{schema}} is SYNC_SCHEMA, substituted (quoted) by migrate.ts.
-- Production never runs this: mana-sync owns the table.
--
-- One column is not mana-sync's current one: field_timestamps, the older
-- deployments' metadata column, kept so one database can hold rows of both
-- shapes in tests; the coordinator reads it only on a table without
-- field_meta. A dev database created before this file had its current
-- constraints keeps its looser columns (CREATE TABLE IF NOT EXISTS); the
-- policies and indexes below are added to it.

CREATE SCHEMA IF NOT EXISTS {{schema}};

CREATE TABLE IF NOT EXISTS {{schema}}.sync_changes (
  id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  app_id           text        NOT NULL,
  table_name       text        NOT NULL,
  record_id        text        NOT NULL,
  user_id          text        NOT NULL,
  op               text        NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
  data             jsonb,
  field_timestamps jsonb       DEFAULT '{}',
  field_meta       jsonb       DEFAULT '{}',
  client_id        text        NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  schema_version   int         NOT NULL DEFAULT 1,
  actor            jsonb,
  origin           text,
  space_id         text
);

CREATE INDEX IF NOT EXISTS sync_changes_user_app_created_idx ON {{schema}}.sync_changes (user_id, app_id, created_at);
CREATE INDEX IF NOT EXISTS sync_changes_table_record_created_idx ON {{schema}}.sync_changes (table_name, record_id, created_at);
CREATE INDEX IF NOT EXISTS sync_changes_user_app_table_created_idx ON {{schema}}.sync_changes (user_id, app_id, table_name, created_at);
CREATE INDEX IF NOT EXISTS sync_changes_user_space_app_created_idx ON {{schema}}.sync_changes (user_id, space_id, app_id, created_at)
  WHERE space_id IS NOT NULL;

ALTER TABLE {{schema}}.sync_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE {{schema}}.sync_changes FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = '{{schema}}.sync_changes'::regclass AND polname = 'sync_changes_user_isolation') THEN
    CREATE POLICY sync_changes_user_isolation ON {{schema}}.sync_changes
      USING (user_id = current_setting('app.current_user_id', true))
      WITH CHECK (user_id = current_setting('app.current_user_id', true));
  END IF;
  -- Members of a space read its rows (written by any member under their own
  -- user_id); writing stays the author's own (no WITH CHECK here).
  IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = '{{schema}}.sync_changes'::regclass AND polname = 'sync_changes_space_member_read') THEN
    CREATE POLICY sync_changes_space_member_read ON {{schema}}.sync_changes
      FOR SELECT
      USING (space_id IS NOT NULL
             AND space_id = ANY(string_to_array(coalesce(current_setting('app.current_user_space_ids', true), ''), ',')));
  END IF;
  -- Superusers bypass RLS even when forced; the per-user writes switch to
  -- this plain role so the policy really applies, as it does in production.
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mana_ai_writer') THEN
    BEGIN
      CREATE ROLE mana_ai_writer NOLOGIN NOSUPERUSER NOBYPASSRLS;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      -- Roles belong to the whole server: another database's migration made it first.
      NULL;
    END;
  END IF;
END $$;
GRANT USAGE ON SCHEMA {{schema}} TO mana_ai_writer;
GRANT SELECT, INSERT ON {{schema}}.sync_changes TO mana_ai_writer;
