/**
 * Device claims on occurrences: first claim wins, others get "held"; the
 * lease holder completes or releases. Shared by the HTTP routes and the
 * WebSocket claim frame. Each outcome maps to one HTTP status.
 */
import type { Sql } from '../db/pool.js';
import { DONE_STATUSES, getOccurrence, type Occurrence } from './occurrences.js';

export type ClaimOutcome =
  | { kind: 'granted'; occurrence: Occurrence; leaseExpiresAt: string }
  | { kind: 'not-found' }
  | { kind: 'forbidden' }
  | { kind: 'held'; by: 'device' | 'server' }
  | { kind: 'gone'; status: string }
  | { kind: 'not-holder' };

export const CLAIM_HTTP_STATUS = {
  granted: 200,
  'not-found': 404,
  forbidden: 403,
  held: 409,
  gone: 410,
  'not-holder': 409,
} as const satisfies Record<ClaimOutcome['kind'], number>;

const ts = `to_char(lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** Why a compare-and-set did not match, from the row as it is now. */
async function explain(sql: Sql, iterationId: string, userId: string, deviceId: string): Promise<ClaimOutcome> {
  const occ = await getOccurrence(sql, iterationId);
  if (!occ) return { kind: 'not-found' };
  // Another user's occurrence: say so without revealing anything about it.
  if (occ.userId !== userId) return { kind: 'forbidden' };
  if ((DONE_STATUSES as string[]).includes(occ.status)) return { kind: 'gone', status: occ.status };
  if (occ.status === 'planning') return { kind: 'held', by: 'server' };
  if (occ.status === 'claimed' && occ.claimedBy !== deviceId) return { kind: 'held', by: 'device' };
  return { kind: 'not-holder' };
}

export interface ClaimService {
  claim(input: { iterationId: string; userId: string; deviceId: string }): Promise<ClaimOutcome>;
  complete(input: { iterationId: string; userId: string; deviceId: string }): Promise<ClaimOutcome>;
  release(input: { iterationId: string; userId: string; deviceId: string; reason?: string }): Promise<ClaimOutcome>;
}

export function createClaimService(deps: { sql: Sql; leaseMs: number; onReleased?: (iterationId: string) => void }): ClaimService {
  const { sql } = deps;
  return {
    async claim({ iterationId, userId, deviceId }) {
      // Claimable while nudged/created/waiting; the same device re-claiming renews its lease.
      const [row] = await sql<(Occurrence & { lease: string })[]>`
        UPDATE mana_ai.occurrences SET status = 'claimed', claimed_by = ${deviceId},
          -- A claim on 'created' answers a frame the router sent over the socket at the due
          -- instant before its ledger write (router.ts fire()): record that channel.
          channel = CASE WHEN status = 'created' THEN coalesce(channel, 'ws') ELSE channel END,
          lease_expires_at = now() + make_interval(secs => ${deps.leaseMs / 1000}), deadline_at = NULL, updated_at = now()
        WHERE iteration_id = ${iterationId} AND user_id = ${userId}
          AND (status IN ('created', 'nudged', 'waiting') OR (status = 'claimed' AND claimed_by = ${deviceId}))
        RETURNING iteration_id::text AS "iterationId", ${sql.unsafe(ts)} AS lease`;
      if (row) {
        const occurrence = (await getOccurrence(sql, iterationId))!;
        return { kind: 'granted', occurrence, leaseExpiresAt: row.lease };
      }
      return explain(sql, iterationId, userId, deviceId);
    },

    async complete({ iterationId, userId, deviceId }) {
      const [row] = await sql`
        UPDATE mana_ai.occurrences SET status = 'completed', lease_expires_at = NULL, updated_at = now()
        WHERE iteration_id = ${iterationId} AND user_id = ${userId} AND status = 'claimed' AND claimed_by = ${deviceId}
        RETURNING iteration_id`;
      if (row) return { kind: 'granted', occurrence: (await getOccurrence(sql, iterationId))!, leaseExpiresAt: '' };
      const occ = await getOccurrence(sql, iterationId);
      // Completing twice is fine for the device that did it.
      if (occ && occ.userId === userId && occ.status === 'completed' && occ.claimedBy === deviceId) {
        return { kind: 'granted', occurrence: occ, leaseExpiresAt: '' };
      }
      return explain(sql, iterationId, userId, deviceId);
    },

    async release({ iterationId, userId, deviceId, reason }) {
      // Back to nudged with a deadline of now: the next pass hands it to the fallback at once.
      const [row] = await sql`
        UPDATE mana_ai.occurrences SET status = 'nudged', claimed_by = NULL, lease_expires_at = NULL,
          deadline_at = now(), last_error = ${`released by ${deviceId}${reason ? `: ${reason.slice(0, 200)}` : ''}`}, updated_at = now()
        WHERE iteration_id = ${iterationId} AND user_id = ${userId} AND status = 'claimed' AND claimed_by = ${deviceId}
        RETURNING iteration_id`;
      if (row) {
        deps.onReleased?.(iterationId);
        return { kind: 'granted', occurrence: (await getOccurrence(sql, iterationId))!, leaseExpiresAt: '' };
      }
      return explain(sql, iterationId, userId, deviceId);
    },
  };
}
