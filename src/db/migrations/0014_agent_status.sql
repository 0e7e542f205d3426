-- A mission whose agent is paused, archived or deleted is not due (no
-- occurrence, no nudge, no server plan). The status of each mission's agent
-- (src/agents/agent.ts's rule) is kept on the mission's row, so the due
-- index leaves such missions out: the due scan, the look-ahead and the push
-- window never read them, however long the agent stays paused.
--
-- NULL: not worked out yet (a new row, or every row right after this
-- migration). The projection's pass works it out before it commits
-- (src/projection/agent-status.ts); until then the mission is not due.
ALTER TABLE mana_ai.mission_snapshots ADD COLUMN agent_status text;

CREATE INDEX mission_snapshots_agent_pending_idx ON mana_ai.mission_snapshots (user_id, mission_id)
  WHERE agent_status IS NULL;

DROP INDEX mana_ai.mission_snapshots_due_idx;
CREATE INDEX mission_snapshots_due_idx ON mana_ai.mission_snapshots (next_run_at, user_id, mission_id)
  WHERE present AND NOT soft_deleted AND state = 'active' AND next_run_at IS NOT NULL AND listed AND author = user_id
    AND agent_status = 'active';

-- Occurrences superseded because their agent stopped: creating an occurrence
-- reopens such a row when the agent resumes (src/schedule/transitions.ts).
-- A burst's creations probe this small index, not the whole ledger.
CREATE INDEX occurrences_agent_held_idx ON mana_ai.occurrences (iteration_id)
  WHERE status = 'superseded' AND reason IN ('agent-paused', 'agent-archived', 'agent-deleted');
