-- The occurrence ledger, live-socket presence, devices' push subscriptions.

CREATE TABLE mana_ai.occurrences (
  iteration_id      uuid        PRIMARY KEY,
  user_id           text        NOT NULL,
  mission_id        text        NOT NULL,
  due_at            timestamptz NOT NULL,
  -- created → nudged → claimed → completed; planning → planned | failed;
  -- waiting = no party can plan it now (no device answered, server may not);
  -- superseded = the mission moved on without this occurrence.
  status            text        NOT NULL DEFAULT 'created' CHECK (status IN
                      ('created', 'nudged', 'claimed', 'planning', 'waiting', 'planned', 'completed', 'superseded', 'failed')),
  channel           text        CHECK (channel IN ('ws', 'push', 'server')),
  claimed_by        text,
  deadline_at       timestamptz,
  lease_expires_at  timestamptz,
  attempts          int         NOT NULL DEFAULT 0,
  next_attempt_at   timestamptz,
  last_error        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, mission_id, due_at)
);

CREATE INDEX occurrences_deadline_idx ON mana_ai.occurrences (deadline_at) WHERE status = 'nudged';
CREATE INDEX occurrences_lease_idx ON mana_ai.occurrences (lease_expires_at) WHERE status IN ('claimed', 'planning');
CREATE INDEX occurrences_waiting_idx ON mana_ai.occurrences (next_attempt_at) WHERE status = 'waiting';
CREATE INDEX occurrences_open_idx ON mana_ai.occurrences (user_id, mission_id)
  WHERE status IN ('created', 'nudged', 'claimed', 'planning', 'waiting');

CREATE TABLE mana_ai.presence (
  instance_id   text        NOT NULL,
  conn_id       text        NOT NULL,
  user_id       text        NOT NULL,
  device_id     text        NOT NULL,
  connected_at  timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance_id, conn_id)
);
CREATE INDEX presence_user_idx ON mana_ai.presence (user_id, heartbeat_at);

CREATE TABLE mana_ai.push_subscriptions (
  endpoint         text        PRIMARY KEY,
  user_id          text        NOT NULL,
  device_id        text        NOT NULL,
  p256dh           text        NOT NULL,
  auth             text        NOT NULL,
  expiration_time  timestamptz,
  vapid_public_key text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  last_success_at  timestamptz,
  last_failure_at  timestamptz,
  failures         int         NOT NULL DEFAULT 0
);
CREATE INDEX push_subscriptions_user_idx ON mana_ai.push_subscriptions (user_id, device_id);
