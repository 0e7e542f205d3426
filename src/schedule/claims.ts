/**
 * Device claims on occurrences: first claim wins, others get "held"; the
 * lease holder completes or releases (the statements are in transitions.ts;
 * this module explains a refusal). Shared by the HTTP routes and the
 * WebSocket claim frame. Each outcome maps to one HTTP status.
 */
import { z } from 'zod';
import type { Sql } from '../db/pool.js';
import { createBatcher } from '../lib/batcher.js';
import { DONE_STATUSES, type Occurrence } from './occurrence.js';
import { getOccurrence } from './occurrences.js';
import { RELEASE_CODES, type ReleaseCode } from './reasons.js';
import { claimForDevices, completeForDevice, releaseForDevice, type DeviceClaim } from './transitions.js';

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
  /** `code` is what the device says (a fixed set), `reason` a short note for operators. */
  release(input: { iterationId: string; userId: string; deviceId: string; reason?: string; code?: ReleaseCode }): Promise<ClaimOutcome>;
}

/** The routes' own check (protocol.ts, routes/occurrences.ts). */
const Uuid = z.string().uuid();
const isUuid = (id: string): boolean => Uuid.safeParse(id).success;

/** Claims per statement, and statements in flight, when many devices claim at once. */
const CLAIM_BATCH = 1000;
const CLAIM_STATEMENTS = 2;

export function createClaimService(deps: { sql: Sql; leaseMs: number; onReleased?: (iterationId: string) => void }): ClaimService {
  const { sql } = deps;
  // Every device of 10,000 users claims the moment its nudge arrives: one statement
  // per batch of claims instead of two round trips each, which queued on the pool
  // ahead of the scheduler pass routing the rest of the burst.
  const claimBatch = createBatcher<DeviceClaim, ClaimOutcome>({
    key: (c) => c.iterationId,
    maxBatch: CLAIM_BATCH,
    concurrency: CLAIM_STATEMENTS,
    async run(claims) {
      // One malformed id would fail the whole statement (the routes check it too).
      const granted = await claimForDevices(sql, claims.filter((c) => isUuid(c.iterationId)), deps.leaseMs);
      return Promise.all(
        claims.map(async (c): Promise<ClaimOutcome> => {
          if (!isUuid(c.iterationId)) return { kind: 'not-found' };
          const won = granted.get(c.iterationId);
          return won ? { kind: 'granted', occurrence: won.occurrence, leaseExpiresAt: won.lease } : explain(sql, c.iterationId, c.userId, c.deviceId);
        }),
      );
    },
  });
  return {
    claim: (c) => claimBatch({ iterationId: c.iterationId, userId: c.userId, deviceId: c.deviceId }),

    async complete(c) {
      if (await completeForDevice(sql, c)) return { kind: 'granted', occurrence: (await getOccurrence(sql, c.iterationId))!, leaseExpiresAt: '' };
      const occ = await getOccurrence(sql, c.iterationId);
      // Completing twice is fine for the device that did it.
      if (occ && occ.userId === c.userId && occ.status === 'completed' && occ.claimedBy === c.deviceId) {
        return { kind: 'granted', occurrence: occ, leaseExpiresAt: '' };
      }
      return explain(sql, c.iterationId, c.userId, c.deviceId);
    },

    async release({ reason, code, ...c }) {
      const detail = code === undefined ? reason : reason ? `${code}: ${reason}` : code;
      if (await releaseForDevice(sql, c, detail, code === undefined ? 'device-released' : RELEASE_CODES[code])) {
        deps.onReleased?.(c.iterationId);
        return { kind: 'granted', occurrence: (await getOccurrence(sql, c.iterationId))!, leaseExpiresAt: '' };
      }
      return explain(sql, c.iterationId, c.userId, c.deviceId);
    },
  };
}
