/**
 * Every transition of an occurrence, as SQL. Creation is INSERT … ON
 * CONFLICT DO NOTHING (the instance whose insert lands routes it); every
 * other transition is a compare-and-set UPDATE … WHERE status = …
 * RETURNING, so several instances never double-handle; scans take rows FOR
 * UPDATE SKIP LOCKED. Each statement moves a whole batch: a burst of
 * 100,000 due occurrences must not cost a round trip each.
 */
import type { Sql } from '../db/pool.js';
import type { DueMission } from './due.js';
import { iterationIdFor } from './occurrence-id.js';
import { COLUMNS, ts, type Occurrence, type OccurrenceStatus } from './occurrence.js';
import { AGENT_HELD_SQL, type Reason } from './reasons.js';

/**
 * Where an occurrence starts. A burst routes at creation: 'ws' rows start
 * nudged over the WebSocket, 'server' rows start with this instance's server
 * planner (holding its lease), 'wait' rows start waiting for a device; only
 * 'created' rows (Web Push, whose send follows) are routed after. Each row is
 * written once instead of inserted and then updated: at the top of an hour
 * that second write was a third of the burst.
 */
export type StartAs = 'created' | 'ws' | 'server' | 'wait';

export interface CreateOptions {
  /** How each due mission's occurrence starts; default 'created'. */
  startAs?: (d: DueMission) => StartAs;
  /** Claim deadline of 'ws' rows, counted from the later of now and dueAt. */
  wsDeadlineMs?: number;
  /** Holder, lease and reason of 'server' rows (as takeForServer sets them). */
  server?: { holder: string; leaseMs: number; reason: Reason };
  /** Reason and retry delay of 'wait' rows (as markWaitingMany sets them). */
  wait?: { reason: Reason; retryInMs: number };
}

/**
 * Creates the occurrences of due missions; returns only the ones this call
 * created (or reopened: superseded while the mission's agent was stopped),
 * each as stored. A 'ws' occurrence created ahead of its due time
 * (its deadline counts from dueAt) is nudged ahead too and needs no write at
 * its instant. `due[].nextRunAt` must be canonical (as findDueMissions
 * returns it): it is the returned dueAt.
 */
export async function createOccurrences(sql: Sql, due: DueMission[], opts: CreateOptions = {}): Promise<Occurrence[]> {
  if (due.length === 0) return [];
  const byId = new Map<string, DueMission>();
  for (const d of due) byId.set(iterationIdFor(d.userId, d.missionId, d.nextRunAt), d);
  // Inserted in iterationId order: two instances inserting overlapping sets in different
  // orders each wait on the other's speculative insert, which Postgres ends as a deadlock.
  const ids = [...byId.keys()].sort();
  const users: string[] = [];
  const missions: string[] = [];
  const dues: string[] = [];
  const starts: StartAs[] = [];
  for (const id of ids) {
    const d = byId.get(id)!;
    users.push(d.userId);
    missions.push(d.missionId);
    dues.push(d.nextRunAt);
    const start = opts.startAs?.(d) ?? 'created';
    if ((start === 'server' && !opts.server) || (start === 'wait' && !opts.wait)) {
      throw new Error(`createOccurrences: an occurrence starting as '${start}' needs opts.${start}`);
    }
    starts.push(start);
  }
  const server = opts.server ?? { holder: null, leaseMs: 0, reason: null };
  const wait = opts.wait ?? { reason: null, retryInMs: 0 };
  // Parameters typed timestamptz go through postgres.js' Date serializer, which drops
  // the microseconds: the instants are bound as text so dueAt stays what it was hashed from.
  // Only the id, status and deadline come back per row, the shared instants once:
  // formatting every timestamp column of 10,000 fresh rows cost a third of the statement.
  const rows = await sql<
    { iterationId: string; status: OccurrenceStatus; offers: number; attempts: number; routeAttempts: number; at: string; lease: string; retryAt: string; deadline: string | null }[]
  >`
    WITH t AS (
      SELECT now() AS now, now() + make_interval(secs => ${server.leaseMs / 1000}) AS lease,
        now() + make_interval(secs => ${wait.retryInMs / 1000}) AS retry_at
    ),
    v AS (
      SELECT x.i, x.u, x.m, x.d,
        CASE x.s WHEN 'ws' THEN 'nudged' WHEN 'server' THEN 'planning' WHEN 'wait' THEN 'waiting' ELSE 'created' END AS status,
        CASE x.s WHEN 'ws' THEN 'ws' WHEN 'server' THEN 'server' END AS channel,
        CASE WHEN x.s = 'ws' THEN greatest(t.now, x.d) + make_interval(secs => ${(opts.wsDeadlineMs ?? 0) / 1000}) END AS deadline_at,
        CASE WHEN x.s = 'server' THEN ${server.holder}::text END AS claimed_by,
        CASE WHEN x.s = 'server' THEN t.lease END AS lease_expires_at,
        CASE x.s WHEN 'server' THEN ${server.reason?.detail ?? null}::text WHEN 'wait' THEN ${wait.reason?.detail ?? null}::text END AS last_error,
        CASE x.s WHEN 'server' THEN ${server.reason?.code ?? null}::text WHEN 'wait' THEN ${wait.reason?.code ?? null}::text END AS reason,
        CASE WHEN x.s = 'wait' THEN t.retry_at END AS next_attempt_at,
        -- Nudged over the socket or waiting for a device: offered to devices once.
        CASE WHEN x.s IN ('ws', 'wait') THEN 1 ELSE 0 END AS offers
      FROM unnest(${ids}::uuid[], ${users}::text[], ${missions}::text[], ${dues}::text[]::timestamptz[], ${starts}::text[]) AS x(i, u, m, d, s), t
    ),
    -- An occurrence superseded because its agent stopped is the one due again now the agent
    -- is active (the same id): reopened as if new, its offers counting on, so a device that
    -- saw an earlier offer tells this one apart. Only those rows are locked (never an open
    -- one: an INSERT that locked its conflicts could deadlock with a batch moving them).
    reopened AS (
      UPDATE mana_ai.occurrences o SET status = v.status, channel = v.channel, deadline_at = v.deadline_at, claimed_by = v.claimed_by,
        lease_expires_at = v.lease_expires_at, last_error = v.last_error, reason = v.reason, next_attempt_at = v.next_attempt_at,
        offers = o.offers + v.offers, updated_at = now()
      FROM v WHERE o.iteration_id = v.i AND o.status = 'superseded' AND o.reason IN (${sql.unsafe(AGENT_HELD_SQL)})
      RETURNING o.iteration_id, o.status, o.deadline_at, o.offers, o.attempts, o.route_attempts
    ),
    inserted AS (
      INSERT INTO mana_ai.occurrences
        (iteration_id, user_id, mission_id, due_at, status, channel, deadline_at, claimed_by, lease_expires_at, last_error, reason, next_attempt_at, offers)
      SELECT i, u, m, d, status, channel, deadline_at, claimed_by, lease_expires_at, last_error, reason, next_attempt_at, offers FROM v
      ON CONFLICT DO NOTHING
      RETURNING iteration_id, status, deadline_at, offers, attempts, route_attempts
    ),
    ins AS (SELECT * FROM inserted UNION ALL SELECT * FROM reopened)
    SELECT ins.iteration_id::text AS "iterationId", ins.status, ins.offers, ins.attempts, ins.route_attempts AS "routeAttempts",
      (SELECT ${sql.unsafe(ts('now'))} FROM t) AS at,
      (SELECT ${sql.unsafe(ts('lease'))} FROM t) AS lease,
      (SELECT ${sql.unsafe(ts('retry_at'))} FROM t) AS "retryAt",
      CASE WHEN ins.deadline_at IS NULL THEN NULL ELSE ${sql.unsafe(ts('ins.deadline_at'))} END AS deadline
    FROM ins`;
  return rows.map((r) => {
    const d = byId.get(r.iterationId)!;
    const base: Occurrence = {
      iterationId: r.iterationId,
      userId: d.userId,
      missionId: d.missionId,
      dueAt: d.nextRunAt,
      status: r.status,
      channel: null,
      claimedBy: null,
      deadlineAt: r.deadline,
      leaseExpiresAt: null,
      attempts: r.attempts,
      routeAttempts: r.routeAttempts,
      offers: r.offers,
      nextAttemptAt: null,
      lastError: null,
      reason: null,
      createdAt: r.at,
      updatedAt: r.at,
    };
    if (r.status === 'nudged') return { ...base, channel: 'ws' };
    if (r.status === 'planning') {
      return { ...base, channel: 'server', claimedBy: server.holder, leaseExpiresAt: r.lease, lastError: server.reason?.detail ?? null, reason: server.reason?.code ?? null };
    }
    if (r.status === 'waiting') return { ...base, nextAttemptAt: r.retryAt, lastError: wait.reason?.detail ?? null, reason: wait.reason?.code ?? null };
    return base;
  });
}

/**
 * created|waiting → nudged on a channel, with a claim deadline, for many
 * occurrences in one statement (a fan-out of thousands must not pay a round
 * trip each). Returns the rows this call moved. A new nudge clears the
 * previous wait's reason.
 */
export async function markNudged(sql: Sql, iterationIds: string[], channel: 'ws' | 'push', deadlineMs: number): Promise<Occurrence[]> {
  if (iterationIds.length === 0) return [];
  return sql<Occurrence[]>`
    UPDATE mana_ai.occurrences o SET status = 'nudged', channel = ${channel}, offers = o.offers + 1,
      deadline_at = now() + make_interval(secs => ${deadlineMs / 1000}), claimed_by = NULL, lease_expires_at = NULL,
      last_error = NULL, reason = NULL, updated_at = now()
    WHERE iteration_id = ANY(${iterationIds}::uuid[]) AND status IN ('created', 'waiting')
    RETURNING ${sql.unsafe(COLUMNS)}`;
}

/** Hands occurrences to the server planner (from the given statuses), holding a lease; returns the rows taken. */
export async function takeForServer(
  sql: Sql,
  iterationIds: string[],
  from: readonly OccurrenceStatus[],
  holder: string,
  leaseMs: number,
  why?: Reason,
): Promise<Occurrence[]> {
  if (iterationIds.length === 0) return [];
  return sql<Occurrence[]>`
    UPDATE mana_ai.occurrences o SET status = 'planning', channel = 'server', claimed_by = ${holder},
      lease_expires_at = now() + make_interval(secs => ${leaseMs / 1000}), deadline_at = NULL,
      last_error = coalesce(${why?.detail ?? null}, last_error), reason = coalesce(${why?.code ?? null}, reason), updated_at = now()
    WHERE iteration_id = ANY(${iterationIds}::uuid[]) AND status = ANY(${from as string[]})
    RETURNING ${sql.unsafe(COLUMNS)}`;
}

/** → waiting for a device, with a reason visible to operators and a time to try again. */
export async function markWaiting(
  sql: Sql,
  iterationId: string,
  opts: { from: readonly OccurrenceStatus[]; reason: Reason; retryInMs: number; holder?: string },
): Promise<Occurrence | null> {
  const [row] = await markWaitingMany(sql, [{ iterationId, retryInMs: opts.retryInMs }], opts);
  return row ?? null;
}

/**
 * → waiting for many occurrences in one statement, each with its own retry
 * delay (the backoff grows with its attempts). Returns the rows moved.
 */
export async function markWaitingMany(
  sql: Sql,
  items: { iterationId: string; retryInMs: number }[],
  opts: { from: readonly OccurrenceStatus[]; reason: Reason; holder?: string },
): Promise<Occurrence[]> {
  if (items.length === 0) return [];
  const ids = items.map((i) => i.iterationId);
  const secs = items.map((i) => i.retryInMs / 1000);
  return sql<Occurrence[]>`
    UPDATE mana_ai.occurrences o SET status = 'waiting', offers = o.offers + 1, claimed_by = NULL, lease_expires_at = NULL, deadline_at = NULL,
      last_error = ${opts.reason.detail}, reason = ${opts.reason.code}, next_attempt_at = now() + make_interval(secs => x.secs), updated_at = now()
    FROM unnest(${ids}::uuid[], ${secs}::float8[]) AS x(id, secs)
    WHERE o.iteration_id = x.id AND o.status = ANY(${opts.from as string[]})
      AND (${opts.holder ?? null}::text IS NULL OR o.claimed_by = ${opts.holder ?? null})
    RETURNING ${sql.unsafe(COLUMNS)}`;
}

/**
 * Takes occurrences whose claim deadline or lease passed: nudged with no
 * claim, a device lease that expired without completion, or a server lease
 * left by an instance that died. SKIP LOCKED spreads them over instances.
 */
export async function takeExpired(sql: Sql, holder: string, leaseMs: number, limit: number): Promise<Occurrence[]> {
  return sql<Occurrence[]>`
    WITH deadline AS (
      -- A device's release sets its reason and a deadline of now; keep that reason for operators.
      SELECT iteration_id, coalesce(last_error, 'no claim before the deadline') AS why, coalesce(reason, 'no-claim') AS code
      FROM mana_ai.occurrences
      WHERE status = 'nudged' AND deadline_at <= now() ORDER BY deadline_at LIMIT ${limit} FOR UPDATE SKIP LOCKED
    ), lease AS (
      SELECT iteration_id, 'lease of ' || coalesce(claimed_by, '?') || ' expired' AS why, 'lease-expired' AS code
      FROM mana_ai.occurrences
      WHERE status IN ('claimed', 'planning') AND lease_expires_at <= now() ORDER BY lease_expires_at LIMIT ${limit} FOR UPDATE SKIP LOCKED
    ), expired AS (
      SELECT * FROM deadline UNION ALL SELECT * FROM lease
    )
    UPDATE mana_ai.occurrences o SET status = 'planning', channel = 'server', claimed_by = ${holder},
      lease_expires_at = now() + make_interval(secs => ${leaseMs / 1000}), deadline_at = NULL,
      -- A planner retry keeps its failure reason visible; anything else says what expired.
      last_error = CASE WHEN o.status = 'planning' AND o.last_error IS NOT NULL THEN o.last_error ELSE expired.why END,
      reason = CASE WHEN o.status = 'planning' AND o.reason IS NOT NULL THEN o.reason ELSE expired.code END,
      updated_at = now()
    FROM expired WHERE o.iteration_id = expired.iteration_id
    RETURNING ${sql.unsafe(COLUMNS)}`;
}

/** Waiting occurrences whose retry time came, taken (SKIP LOCKED) so one instance re-routes each. */
export async function takeWaitingDue(sql: Sql, limit: number): Promise<Occurrence[]> {
  return sql<Occurrence[]>`
    WITH due AS (
      SELECT iteration_id FROM mana_ai.occurrences
      WHERE status = 'waiting' AND next_attempt_at <= now()
      ORDER BY next_attempt_at LIMIT ${limit} FOR UPDATE SKIP LOCKED
    )
    UPDATE mana_ai.occurrences o SET status = 'created', route_attempts = o.route_attempts + 1, updated_at = now()
    FROM due WHERE o.iteration_id = due.iteration_id
    RETURNING ${sql.unsafe(COLUMNS)}`;
}

/**
 * Occurrences left 'created' longer than `staleMs` after both their creation
 * and their due time: their creator crashed or failed between creating and
 * routing them (or before the due instant of one it created ahead), and
 * nothing else would ever move them (the due scan skips missions whose
 * occurrence exists). Taken SKIP LOCKED and re-stamped so one instance
 * routes each again.
 */
export async function takeStaleCreated(sql: Sql, staleMs: number, limit: number): Promise<Occurrence[]> {
  return sql<Occurrence[]>`
    WITH stale AS (
      SELECT iteration_id FROM mana_ai.occurrences
      WHERE status = 'created' AND greatest(updated_at, due_at) < now() - make_interval(secs => ${staleMs / 1000})
      ORDER BY updated_at LIMIT ${limit} FOR UPDATE SKIP LOCKED
    )
    UPDATE mana_ai.occurrences o SET updated_at = now()
    FROM stale WHERE o.iteration_id = stale.iteration_id
    RETURNING ${sql.unsafe(COLUMNS)}`;
}

/**
 * Deletes occurrences this instance readied ahead of their due time and will
 * not send after all (shutdown): nobody has seen them yet (a device gets a
 * nudge only once it is due), and without the row the due scan of any
 * instance picks the mission up at its due time.
 */
export async function releaseReadied(sql: Sql, iterationIds: string[]): Promise<number> {
  if (iterationIds.length === 0) return 0;
  const r = await sql`
    DELETE FROM mana_ai.occurrences
    WHERE iteration_id = ANY(${iterationIds}::uuid[]) AND status = 'nudged' AND due_at > now()`;
  return r.count;
}

/**
 * Whether the settle below would close an open occurrence `o` of the mission
 * whose snapshot is `s` (SQL over those two aliases; NULL or false: it would
 * not). Read by the server planner before a run, so a run settles only
 * when there is something to settle.
 */
export const UNSETTLED = `(coalesce((s.fields -> 'iterations') @> jsonb_build_array(jsonb_build_object('id', o.iteration_id::text)), false)
  OR s.present IS NOT TRUE OR s.soft_deleted OR s.state IS DISTINCT FROM 'active' OR NOT s.listed
  OR (s.author = s.user_id) IS NOT TRUE OR coalesce(s.agent_status IN ('paused', 'archived', 'deleted'), false)
  OR s.next_run_at IS DISTINCT FROM o.due_at)`;

/**
 * Closes open occurrences the mission has moved past (of the given missions,
 * or all): an iteration with this id appeared, or nextRunAt moved past dueAt
 * → completed; the mission was paused, finished, archived, deleted or
 * rescheduled, or its agent paused, archived or deleted → superseded.
 */
export async function settleFromSnapshots(
  sql: Sql,
  missions?: readonly { userId: string; missionId: string }[],
): Promise<{ iterationId: string; userId: string; status: OccurrenceStatus }[]> {
  if (missions?.length === 0) return [];
  // Only these missions' occurrences (the ones a refresh just changed, found by the open index), or every open one.
  const only = missions
    ? sql`JOIN unnest(${missions.map((m) => m.userId)}::text[], ${missions.map((m) => m.missionId)}::text[]) AS k(u, m)
        ON k.u = o.user_id AND k.m = o.mission_id`
    : sql``;
  return sql`
    WITH open AS (
      SELECT o.iteration_id, o.due_at, s.present, s.soft_deleted, s.state, s.next_run_at, s.listed, s.author = s.user_id AS authored,
             -- A NULL status (not worked out yet) holds nothing back: it is not a stopped agent.
             coalesce(s.agent_status IN ('paused', 'archived', 'deleted'), false) AS agent_stopped, s.agent_status,
             (s.fields -> 'iterations') @> jsonb_build_array(jsonb_build_object('id', o.iteration_id::text)) AS has_iteration,
             ${sql.unsafe(UNSETTLED)} AS unsettled
      FROM mana_ai.occurrences o
      ${only}
      -- No snapshot row at all is a mission this instance has not projected yet
      -- (another instance's pass held the refresh), not a deleted one (a delete
      -- leaves a tombstone): such an occurrence waits for the projection.
      JOIN mana_ai.mission_snapshots s ON s.user_id = o.user_id AND s.mission_id = o.mission_id
      WHERE o.status IN ('created', 'nudged', 'claimed', 'planning', 'waiting')
    ), verdict AS (
      SELECT iteration_id, CASE
        WHEN coalesce(has_iteration, false) THEN 'completed'
        WHEN present IS NOT TRUE OR soft_deleted OR state IS DISTINCT FROM 'active' OR NOT listed OR authored IS NOT TRUE OR agent_stopped THEN 'superseded'
        -- Moving past a dueAt still in the future (an occurrence created ahead) is a reschedule.
        WHEN next_run_at > due_at AND due_at <= now() THEN 'completed'
        ELSE 'superseded' END AS status,
        CASE
        WHEN coalesce(has_iteration, false) THEN 'iteration appeared on the mission'
        WHEN present IS NOT TRUE OR soft_deleted THEN 'mission deleted'
        WHEN state IS DISTINCT FROM 'active' THEN 'mission ' || coalesce(state, 'without state')
        WHEN NOT listed THEN 'mission without a createdAt the runner lists'
        WHEN authored IS NOT TRUE THEN 'mission authored by another user'
        WHEN agent_stopped THEN 'the mission''s agent is ' || agent_status
        WHEN next_run_at > due_at AND due_at <= now() THEN 'nextRunAt moved past dueAt'
        ELSE 'mission rescheduled' END AS why,
        CASE
        WHEN present IS NOT TRUE OR soft_deleted THEN 'mission-deleted'
        WHEN state IS DISTINCT FROM 'active' THEN 'mission-inactive'
        -- One of AGENT_HELD_REASONS: the agent's resume reopens the occurrence (createOccurrences).
        WHEN agent_stopped AND NOT (NOT listed OR authored IS NOT TRUE) THEN 'agent-' || agent_status
        ELSE 'mission-rescheduled' END AS code
      FROM open
      WHERE unsettled
    ), locked AS (
      -- Lock only the rows that change: locking every open occurrence on every pass
      -- wrote a row lock (and WAL) per open occurrence, 10,000 of them during a fan-out.
      SELECT o.iteration_id FROM mana_ai.occurrences o JOIN verdict v ON v.iteration_id = o.iteration_id
      WHERE o.status IN ('created', 'nudged', 'claimed', 'planning', 'waiting')
      FOR UPDATE OF o SKIP LOCKED
    )
    UPDATE mana_ai.occurrences o SET status = verdict.status, lease_expires_at = NULL, deadline_at = NULL,
      last_error = CASE WHEN verdict.status = 'superseded' THEN verdict.why ELSE o.last_error END,
      reason = CASE WHEN verdict.status = 'superseded' THEN verdict.code ELSE o.reason END, updated_at = now()
    FROM verdict JOIN locked ON locked.iteration_id = verdict.iteration_id
    WHERE o.iteration_id = verdict.iteration_id
    RETURNING o.iteration_id::text AS "iterationId", o.user_id AS "userId", o.status`;
}
