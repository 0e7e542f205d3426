-- Dev/embedded default ONLY: mana-sync's change log as docs/contract.md §1
-- describes it, so a fresh machine works. Production never runs this.

CREATE TABLE IF NOT EXISTS sync_changes (
  id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  app_id           text        NOT NULL,
  table_name       text        NOT NULL,
  record_id        text        NOT NULL,
  user_id          text        NOT NULL,
  op               text        NOT NULL,
  data             jsonb,
  field_timestamps jsonb       DEFAULT '{}',
  field_meta       jsonb       DEFAULT '{}',
  client_id        text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  schema_version   int         DEFAULT 1,
  actor            jsonb,
  origin           text,
  space_id         text
);

CREATE INDEX IF NOT EXISTS sync_changes_user_app_created_idx ON sync_changes (user_id, app_id, created_at);
CREATE INDEX IF NOT EXISTS sync_changes_table_record_created_idx ON sync_changes (table_name, record_id, created_at);
CREATE INDEX IF NOT EXISTS sync_changes_user_app_table_created_idx ON sync_changes (user_id, app_id, table_name, created_at);

ALTER TABLE sync_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_changes FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'sync_changes' AND policyname = 'sync_changes_user_isolation') THEN
    CREATE POLICY sync_changes_user_isolation ON sync_changes
      USING (user_id = current_setting('app.current_user_id', true))
      WITH CHECK (user_id = current_setting('app.current_user_id', true));
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
GRANT SELECT, INSERT ON sync_changes TO mana_ai_writer;
