-- Agents' budgets, counted in the database so every instance sees the same
-- numbers (src/planner/agent-budget.ts).

-- Server plans of an agent: a row with a holder is a plan running under that
-- holder; it counts only while its occurrence is 'planning' under the same
-- holder with a live lease, so a crashed instance's rows stop counting when
-- its leases run out. A row without a holder is an occurrence waiting for a
-- free slot, woken (oldest first) when one frees.
CREATE TABLE mana_ai.agent_slots (
  iteration_id  uuid        PRIMARY KEY,
  user_id       text        NOT NULL,
  agent_id      text        NOT NULL,
  holder        text,
  since         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX agent_slots_agent_idx ON mana_ai.agent_slots (user_id, agent_id, since);

-- Tokens the server spent for an agent, one row per LLM reply; the rolling
-- 24 h sum bounds the agent's next plan. Rows older than the window are
-- deleted when the agent's budget is next checked.
CREATE TABLE mana_ai.agent_tokens (
  user_id       text        NOT NULL,
  agent_id      text        NOT NULL,
  iteration_id  uuid        NOT NULL,
  tokens        integer     NOT NULL CHECK (tokens >= 0),
  spent_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX agent_tokens_window_idx ON mana_ai.agent_tokens (user_id, agent_id, spent_at);
