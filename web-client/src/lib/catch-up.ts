/**
 * After each (re)connect: the occurrences a device should still act on,
 * from `GET /v1/occurrences` (e.g. after the user tapped a push
 * notification, or a claim whose answer was lost). Pure selection; the
 * client runs each like any nudge.
 */
import type { MissionDue } from '../protocol.js';
import { isUuid } from './nudge.js';

interface OccurrenceRow {
  iterationId?: unknown;
  missionId?: unknown;
  dueAt?: unknown;
  status?: unknown;
  claimedBy?: unknown;
  mine?: unknown;
  deadlineAt?: unknown;
  offers?: unknown;
}

/**
 * The rows to handle: nudged and unclaimed with the deadline still ahead,
 * waiting for a device (the server cannot plan it now), or claimed by this
 * very context (its claim was granted but the answer never arrived: claiming
 * again renews the lease and plans). Each as a nudge whose `attempt` is the
 * row's offer count.
 */
export function catchUpNudges(body: unknown, now: number): MissionDue[] {
  // A bare array is the contract; `{ occurrences: [...] }` is tolerated.
  const rows = Array.isArray(body) ? body : (body as { occurrences?: unknown } | undefined)?.occurrences;
  if (!Array.isArray(rows)) return [];
  const nudges: MissionDue[] = [];
  for (const row of rows as OccurrenceRow[]) {
    const { iterationId, missionId, dueAt, status, claimedBy, mine, deadlineAt, offers } = row ?? {};
    if (!isUuid(iterationId) || typeof missionId !== 'string' || typeof dueAt !== 'string') continue;
    const open =
      (status === 'nudged' && (claimedBy ?? null) === null && !(typeof deadlineAt === 'string' && Date.parse(deadlineAt) <= now)) ||
      status === 'waiting' ||
      (status === 'claimed' && mine === true);
    if (!open) continue;
    const nudge: MissionDue = { type: 'mission-due', missionId, iterationId, dueAt };
    if (Number.isInteger(offers) && (offers as number) >= 1) nudge.attempt = offers as number;
    nudges.push(nudge);
  }
  return nudges;
}
