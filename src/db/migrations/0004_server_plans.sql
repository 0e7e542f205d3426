-- What the server planner wrote, so a write dropped by a concurrent device
-- write (iterations is ONE field under LWW) can be detected and repaired.
ALTER TABLE mana_ai.occurrences
  ADD COLUMN plan        jsonb,
  ADD COLUMN written_at  text,
  ADD COLUMN repairs     int NOT NULL DEFAULT 0;

CREATE INDEX occurrences_written_idx ON mana_ai.occurrences (updated_at)
  WHERE status IN ('planned', 'failed') AND written_at IS NOT NULL;
