-- When the server planner first spent an LLM call on an occurrence: the
-- per-user daily budget of server plans counts these, in the database, so
-- the budget holds across instances.
ALTER TABLE mana_ai.occurrences ADD COLUMN server_started_at timestamptz;

CREATE INDEX occurrences_server_started_idx ON mana_ai.occurrences (user_id, server_started_at)
  WHERE server_started_at IS NOT NULL;
