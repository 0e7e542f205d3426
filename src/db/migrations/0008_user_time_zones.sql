-- The time zone each user's devices last reported (a browser's local zone,
-- the one the webapp computes daily and weekly cadences in), so a mission
-- the server planned is advanced where the user's devices would advance it.
-- One row per user: the latest report wins.
CREATE TABLE mana_ai.user_time_zones (
  user_id     text        PRIMARY KEY,
  time_zone   text        NOT NULL,
  device_id   text        NOT NULL,
  reported_at timestamptz NOT NULL DEFAULT now()
);
