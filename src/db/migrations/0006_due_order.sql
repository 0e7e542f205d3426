-- The due scan reads missions in (next_run_at, user_id, mission_id) order and
-- stops after a batch: at the top of an hour 100,000 missions share one
-- next_run_at, and with only next_run_at as key every batch had to fetch,
-- check and sort all of them left at that instant. With the whole order in
-- the key, a batch reads just its own rows and continues from the last one.
DROP INDEX mana_ai.mission_snapshots_due_idx;
CREATE INDEX mission_snapshots_due_idx ON mana_ai.mission_snapshots (next_run_at, user_id, mission_id)
  WHERE present AND NOT soft_deleted AND state = 'active' AND next_run_at IS NOT NULL;
