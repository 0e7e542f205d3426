-- Versions spell the row's position short (src/projection/stamp.ts,
-- versionPosition): created_at in 11 characters and the id in 22, instead of
-- 64 in all. A stored version in the long spelling does not compare correctly
-- with a new one, so the views are emptied and the cursor removed, as in
-- 0007: the next pass is a cold catch-up that rebuilds every view from the
-- log (at 1M rows a few seconds). Until it has run, settling leaves open
-- occurrences alone.
TRUNCATE mana_ai.mission_snapshots, mana_ai.agent_snapshots;
DELETE FROM mana_ai.projection_cursor;
