/**
 * The transitions a device drives: claim (many at once, one statement per
 * batch), complete and release. Each is a compare-and-set; a claim batch
 * also answers every claim it did not grant from the rows it locked, so no
 * claim of a batch depends on a second query.
 */
import type { Sql } from '../db/pool.js';
import { COLUMNS, type Occurrence, type OccurrenceStatus } from './occurrence.js';
import { reason as reasonOf, type ReasonCode } from './reasons.js';

export interface DeviceClaim {
  iterationId: string;
  userId: string;
  /** The claimant: opaque here (the routes build it from the device and its context). */
  deviceId: string;
}

/** What a claim batch says about one claim: granted, or the row as it was when the claim lost (null: no such occurrence). */
export type ClaimResult =
  | { granted: true; occurrence: Occurrence; lease: string }
  | { granted: false; found: { userId: string; status: OccurrenceStatus; claimedBy: string | null } | null };

const LEASE_TS = `to_char(o.lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

type Row = Partial<Occurrence> & { n: string; won: boolean; lease: string | null; foundUser: string | null; foundStatus: OccurrenceStatus | null; foundBy: string | null };

/**
 * created|nudged|waiting → claimed by a device (first claim wins); the same
 * device re-claiming renews its lease. Many claims, each for another
 * occurrence, in one statement; returns one result per claim, in order.
 *
 * The rows are locked in iteration id order before any is changed, whatever
 * order the claims arrived in: two instances batching the same occurrences
 * in opposite orders would otherwise each hold one row and wait for the
 * other until Postgres ends one batch as a deadlock (createOccurrences sorts
 * for the same reason). A claim that loses is answered from its locked row.
 */
export async function claimForDevices(sql: Sql, claims: DeviceClaim[], leaseMs: number): Promise<ClaimResult[]> {
  if (claims.length === 0) return [];
  const rows = await sql<Row[]>`
    WITH x AS (
      SELECT * FROM unnest(${claims.map((c) => c.iterationId)}::uuid[], ${claims.map((c) => c.userId)}::text[], ${claims.map((c) => c.deviceId)}::text[])
        WITH ORDINALITY AS x(i, u, d, n)
    ), locked AS MATERIALIZED (
      SELECT o.iteration_id, o.user_id, o.status, o.claimed_by FROM mana_ai.occurrences o
      WHERE o.iteration_id IN (SELECT i FROM x)
      ORDER BY o.iteration_id
      FOR NO KEY UPDATE
    ), won AS (
      UPDATE mana_ai.occurrences o SET status = 'claimed', claimed_by = x.d,
        -- A claim on 'created' answers a frame sent over the socket before its ledger
        -- write landed (a nudge readied ahead, or a pending list on reconnect): record that channel.
        channel = CASE WHEN o.status = 'created' THEN coalesce(o.channel, 'ws') ELSE o.channel END,
        lease_expires_at = now() + make_interval(secs => ${leaseMs / 1000}), deadline_at = NULL, updated_at = now()
      FROM x JOIN locked l ON l.iteration_id = x.i
      WHERE o.iteration_id = x.i AND o.user_id = x.u
        AND (o.status IN ('created', 'nudged', 'waiting') OR (o.status = 'claimed' AND o.claimed_by = x.d))
      RETURNING x.n AS won_n, ${sql.unsafe(COLUMNS)}, ${sql.unsafe(LEASE_TS)} AS lease
    )
    SELECT x.n::text AS n, won.won_n IS NOT NULL AS won, won."iterationId", won."userId", won."missionId", won."dueAt", won.status,
      won.channel, won."claimedBy", won."deadlineAt", won."leaseExpiresAt", won.attempts, won."routeAttempts", won."nextAttemptAt",
      won."lastError", won.reason, won."createdAt", won."updatedAt", won.lease,
      l.user_id AS "foundUser", l.status AS "foundStatus", l.claimed_by AS "foundBy"
    FROM x LEFT JOIN won ON won.won_n = x.n LEFT JOIN locked l ON l.iteration_id = x.i
    ORDER BY x.n`;
  return rows.map(({ n: _n, won, lease, foundUser, foundStatus, foundBy, ...occurrence }): ClaimResult =>
    won
      ? { granted: true, occurrence: occurrence as Occurrence, lease: lease! }
      : { granted: false, found: foundUser === null ? null : { userId: foundUser, status: foundStatus!, claimedBy: foundBy } },
  );
}

/** claimed by this device → completed; the row as it is now, or null when the device does not hold it. */
export async function completeForDevice(sql: Sql, c: DeviceClaim): Promise<Occurrence | null> {
  const [row] = await sql<Occurrence[]>`
    UPDATE mana_ai.occurrences o SET status = 'completed', lease_expires_at = NULL, updated_at = now()
    WHERE iteration_id = ${c.iterationId} AND user_id = ${c.userId} AND status = 'claimed' AND claimed_by = ${c.deviceId}
    RETURNING ${sql.unsafe(COLUMNS)}`;
  return row ?? null;
}

/**
 * claimed by this device → nudged with a deadline of now: the next pass hands
 * it to the fallback at once. Returns the row as this statement left it (a
 * pass may move it on right after), or null when the device does not hold it.
 */
export async function releaseForDevice(sql: Sql, c: DeviceClaim, detail?: string, code: ReasonCode = 'device-released'): Promise<Occurrence | null> {
  const [row] = await sql<Occurrence[]>`
    UPDATE mana_ai.occurrences o SET status = 'nudged', claimed_by = NULL, lease_expires_at = NULL,
      deadline_at = now(), last_error = ${`released by ${c.deviceId}${detail ? `: ${detail.slice(0, 200)}` : ''}`},
      reason = ${reasonOf(code).code}, updated_at = now()
    WHERE iteration_id = ${c.iterationId} AND user_id = ${c.userId} AND status = 'claimed' AND claimed_by = ${c.deviceId}
    RETURNING ${sql.unsafe(COLUMNS)}`;
  return row ?? null;
}
