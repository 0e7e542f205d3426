-- The projection of aiMissions and its cursor, plus a small settings table.

CREATE TABLE mana_ai.mission_snapshots (
  user_id       text        NOT NULL,
  mission_id    text        NOT NULL,
  -- Field values and, per field, the LWW stamp "instant|created_at|row id".
  fields        jsonb       NOT NULL DEFAULT '{}',
  versions      jsonb       NOT NULL DEFAULT '{}',
  last_delete   text,
  max_pos       text,
  present       boolean     NOT NULL DEFAULT false,
  soft_deleted  boolean     NOT NULL DEFAULT false,
  state         text,
  next_run_at   timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, mission_id)
);

-- The due scan reads only this: active, live missions with a next run.
CREATE INDEX mission_snapshots_due_idx ON mana_ai.mission_snapshots (next_run_at)
  INCLUDE (user_id, mission_id)
  WHERE present AND NOT soft_deleted AND state = 'active' AND next_run_at IS NOT NULL;

CREATE TABLE mana_ai.projection_cursor (
  name        text        PRIMARY KEY,
  -- Every row with created_at below the horizon has been applied.
  horizon     text        NOT NULL,
  -- "created_at|id" of applied rows at or above the horizon.
  applied     text[]      NOT NULL DEFAULT '{}',
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Dev-default secrets that must survive restarts and be shared by every
-- instance on one database (dev JWT secret, generated VAPID keys).
CREATE TABLE mana_ai.settings (
  key         text        PRIMARY KEY,
  value       jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
