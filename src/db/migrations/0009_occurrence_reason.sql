-- Why an occurrence is where it is, as a stable code its user may see
-- (src/schedule/reasons.ts). last_error keeps the detail for operators: it can
-- name hosts, devices or an LLM reply, and never reaches users.
ALTER TABLE mana_ai.occurrences ADD COLUMN reason text;
