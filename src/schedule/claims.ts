/**
 * Device claims on occurrences: first claim wins, others get "held"; the
 * lease holder completes or releases (the statements are in
 * device-transitions.ts; this module explains a refusal). Shared by the HTTP
 * routes and the WebSocket claim frame. Each outcome maps to one HTTP status.
 */
import { z } from 'zod';
import type { Sql } from '../db/pool.js';
import { createBatcher } from '../lib/batcher.js';
import { DONE_STATUSES, type Occurrence } from './occurrence.js';
import { getOccurrence } from './occurrences.js';
import { RELEASE_CODES, type ReleaseCode } from './reasons.js';
import { claimForDevices, completeForDevice, releaseForDevice, type ClaimResult, type DeviceClaim } from './device-transitions.js';

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

/** Why a compare-and-set did not match, from the row as it was (null: no such occurrence). Pure. */
export function refusal(found: Extract<ClaimResult, { granted: false }>['found'], userId: string, deviceId: string): ClaimOutcome {
  if (!found) return { kind: 'not-found' };
  // Another user's occurrence: say so without revealing anything about it.
  if (found.userId !== userId) return { kind: 'forbidden' };
  if ((DONE_STATUSES as string[]).includes(found.status)) return { kind: 'gone', status: found.status };
  if (found.status === 'planning') return { kind: 'held', by: 'server' };
  if (found.status === 'claimed' && found.claimedBy !== deviceId) return { kind: 'held', by: 'device' };
  return { kind: 'not-holder' };
}

/** Why a complete or release did not match, from the row as it is now. */
async function explain(sql: Sql, c: DeviceClaim): Promise<ClaimOutcome> {
  return refusal(await getOccurrence(sql, c.iterationId), c.userId, c.deviceId);
}

/**
 * Iteration ids as the ledger spells them. zod's uuid accepts upper case, and
 * the batcher keys on the string: two spellings of one id in one batch would
 * both reach the statement, which updates the row once while both devices
 * could be told "granted".
 */
const canonical = <T extends { iterationId: string }>(c: T): T => ({ ...c, iterationId: c.iterationId.toLowerCase() });

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

const zip = <A, B>(a: A[], b: B[]): [A, B][] => a.map((x, i) => [x, b[i]!]);

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
      const valid = claims.filter((c) => isUuid(c.iterationId));
      // Every answer comes from the one statement: no claim waits on (or fails with) a second query.
      const results = new Map(zip(valid, await claimForDevices(sql, valid, deps.leaseMs)));
      return claims.map((c): ClaimOutcome => {
        const r = results.get(c);
        if (!r) return { kind: 'not-found' };
        return r.granted ? { kind: 'granted', occurrence: r.occurrence, leaseExpiresAt: r.lease } : refusal(r.found, c.userId, c.deviceId);
      });
    },
  });
  return {
    claim: (c) => claimBatch(canonical({ iterationId: c.iterationId, userId: c.userId, deviceId: c.deviceId })),

    async complete(input) {
      const c = canonical(input);
      const completed = await completeForDevice(sql, c);
      if (completed) return { kind: 'granted', occurrence: completed, leaseExpiresAt: '' };
      const occ = await getOccurrence(sql, c.iterationId);
      // Completing twice is fine for the device that did it.
      if (occ && occ.userId === c.userId && occ.status === 'completed' && occ.claimedBy === c.deviceId) {
        return { kind: 'granted', occurrence: occ, leaseExpiresAt: '' };
      }
      return refusal(occ, c.userId, c.deviceId);
    },

    async release({ reason, code, ...input }) {
      const c = canonical(input);
      const detail = code === undefined ? reason : reason ? `${code}: ${reason}` : code;
      // Answered from the release itself: the pass it wakes may hand the occurrence on before a second read.
      const released = await releaseForDevice(sql, c, detail, code === undefined ? 'device-released' : RELEASE_CODES[code]);
      if (released) {
        deps.onReleased?.(c.iterationId);
        return { kind: 'granted', occurrence: released, leaseExpiresAt: '' };
      }
      return explain(sql, c);
    },
  };
}
