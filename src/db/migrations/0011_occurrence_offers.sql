-- How many times the occurrence was offered to the user's devices: a nudge
-- (WebSocket or Web Push) or a hand-back to waiting counts one. Nudge frames
-- and push payloads carry it as `attempt`, so a device that stood aside for an
-- earlier offer (held or done elsewhere) knows a higher number is a new one.
-- It is not `attempts`, which counts routing and planning tries.
ALTER TABLE mana_ai.occurrences ADD COLUMN offers int NOT NULL DEFAULT 0;
