/**
 * Device claims on occurrences: first claim wins, others get "held"; the
 * lease holder completes or releases (the statements are in transitions.ts;
 * this module explains a refusal). Shared by the HTTP routes and the
 * WebSocket claim frame. Each outcome maps to one HTTP status.
 */
import type { Sql } from '../db/pool.js';
import { DONE_STATUSES, type Occurrence } from './occurrence.js';
import { getOccurrence } from './occurrences.js';
import { claimForDevice, completeForDevice, releaseForDevice } from './transitions.js';

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
    async claim(c) {
      const row = await claimForDevice(sql, c, deps.leaseMs);
      if (row) {
        const occurrence = (await getOccurrence(sql, c.iterationId))!;
        return { kind: 'granted', occurrence, leaseExpiresAt: row.lease };
      }
      return explain(sql, c.iterationId, c.userId, c.deviceId);
    },

    async complete(c) {
      if (await completeForDevice(sql, c)) return { kind: 'granted', occurrence: (await getOccurrence(sql, c.iterationId))!, leaseExpiresAt: '' };
      const occ = await getOccurrence(sql, c.iterationId);
      // Completing twice is fine for the device that did it.
      if (occ && occ.userId === c.userId && occ.status === 'completed' && occ.claimedBy === c.deviceId) {
        return { kind: 'granted', occurrence: occ, leaseExpiresAt: '' };
      }
      return explain(sql, c.iterationId, c.userId, c.deviceId);
    },

    async release({ reason, ...c }) {
      if (await releaseForDevice(sql, c, reason)) {
        deps.onReleased?.(c.iterationId);
        return { kind: 'granted', occurrence: (await getOccurrence(sql, c.iterationId))!, leaseExpiresAt: '' };
      }
      return explain(sql, c.iterationId, c.userId, c.deviceId);
    },
  };
}
