-- The projection replays each record as the webapp applies it (docs/contract.md
-- §1): raw string stamps (versions are "stamp U+0001 position", stamp.ts), an
-- insert stamped with its own updatedAt/createdAt, soft deletes that keep the
-- record, hard deletes that remove it, one view per user of each record
-- (views.ts), and agents beside missions.
--
-- Snapshots built under the old rules (instants, created_at fallback, one
-- record per user_id) are wrong under the new ones and cannot be converted:
-- they are emptied and the cursor removed, so the next pass is a cold
-- catch-up that rebuilds every view from the log (a bulk read; at 1M rows a
-- few seconds). Until it has run, settling leaves open occurrences alone
-- (an occurrence without a snapshot row waits for the projection).

ALTER TABLE mana_ai.mission_snapshots
  -- The earliest present-making row since the last hard delete (present: it is set), who wrote it,
  -- and the last soft delete before it; plain: every stamp merged since that delete is plain.
  ADD COLUMN first_pos         text,
  ADD COLUMN first_user        text,
  ADD COLUMN early_soft_delete text,
  ADD COLUMN plain             boolean NOT NULL DEFAULT true,
  -- Derived (due-rule.ts): createdAt is an IndexedDB key (the runner lists through that index),
  -- the view's author (authorId, else first_user), the record's spaceId.
  ADD COLUMN listed            boolean NOT NULL DEFAULT false,
  ADD COLUMN author            text,
  ADD COLUMN space_id          text;

-- Only the author's view of a record is due, and only when the runner lists it.
-- Same key order as 0006 (a batch of the scan continues from the last one's mission).
DROP INDEX mana_ai.mission_snapshots_due_idx;
CREATE INDEX mission_snapshots_due_idx ON mana_ai.mission_snapshots (next_run_at, user_id, mission_id)
  WHERE present AND NOT soft_deleted AND state = 'active' AND next_run_at IS NOT NULL AND listed AND author = user_id;

-- Agents (app ai, table agents), projected by the same pass into the same shape.
CREATE TABLE mana_ai.agent_snapshots (
  user_id           text        NOT NULL,
  agent_id          text        NOT NULL,
  fields            jsonb       NOT NULL DEFAULT '{}',
  versions          jsonb       NOT NULL DEFAULT '{}',
  last_delete       text,
  max_pos           text,
  first_pos         text,
  first_user        text,
  early_soft_delete text,
  plain             boolean     NOT NULL DEFAULT true,
  present           boolean     NOT NULL DEFAULT false,
  soft_deleted      boolean     NOT NULL DEFAULT false,
  state             text,
  next_run_at       timestamptz,
  listed            boolean     NOT NULL DEFAULT false,
  author            text,
  space_id          text,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, agent_id)
);
ALTER TABLE mana_ai.agent_snapshots SET (toast_tuple_target = 8160);

-- Which users stamped which real space on which record (views.ts): a row of
-- one member goes to the views of the others who stamped its space.
CREATE TABLE mana_ai.record_spaces (
  table_name  text NOT NULL,
  record_id   text NOT NULL,
  space_id    text NOT NULL,
  user_id     text NOT NULL,
  PRIMARY KEY (table_name, record_id, space_id, user_id)
);

TRUNCATE mana_ai.mission_snapshots;
DELETE FROM mana_ai.projection_cursor;
