/**
 * The occurrence record as the ledger holds it: its states, its columns and
 * the one select list every query returns it with (snake_case stops here).
 */

export type OccurrenceStatus =
  | 'created'
  | 'nudged'
  | 'claimed'
  | 'planning'
  | 'waiting'
  | 'planned'
  | 'completed'
  | 'superseded'
  | 'failed';
export type Channel = 'ws' | 'push' | 'server';

export const OPEN_STATUSES: readonly OccurrenceStatus[] = ['created', 'nudged', 'claimed', 'planning', 'waiting'];
export const DONE_STATUSES: readonly OccurrenceStatus[] = ['planned', 'completed', 'superseded', 'failed'];

export interface Occurrence {
  iterationId: string;
  userId: string;
  missionId: string;
  dueAt: string;
  status: OccurrenceStatus;
  channel: Channel | null;
  claimedBy: string | null;
  deadlineAt: string | null;
  leaseExpiresAt: string | null;
  /** Planning attempts: the server planner's runs that reached planning (PLANNER_MAX_ATTEMPTS bounds these). */
  attempts: number;
  /** How often it was routed again after waiting for a device (its wait grows with these). */
  routeAttempts: number;
  /** Times devices were offered it (nudges, hand-backs to waiting): a nudge's `attempt`. */
  offers: number;
  nextAttemptAt: string | null;
  /** Operators' detail (may name hosts, devices, replies): never shown to users. */
  lastError: string | null;
  /** The public code of `reasons.ts` for the same fact. */
  reason: string | null;
  createdAt: string;
  updatedAt: string;
}

export const ts = (col: string) => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** The select list (qualified by `o.`), snake_case stopping here. */
export const COLUMNS = `
  o.iteration_id::text AS "iterationId", o.user_id AS "userId", o.mission_id AS "missionId",
  ${ts('o.due_at')} AS "dueAt", o.status, o.channel, o.claimed_by AS "claimedBy",
  ${ts('o.deadline_at')} AS "deadlineAt", ${ts('o.lease_expires_at')} AS "leaseExpiresAt",
  o.attempts, o.route_attempts AS "routeAttempts", o.offers, ${ts('o.next_attempt_at')} AS "nextAttemptAt", o.last_error AS "lastError", o.reason,
  ${ts('o.created_at')} AS "createdAt", ${ts('o.updated_at')} AS "updatedAt"`;

export function serverHolder(instanceId: string): string {
  return `server:${instanceId}`;
}

