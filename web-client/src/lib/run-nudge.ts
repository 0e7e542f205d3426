/**
 * Handling one due occurrence in one browsing context: lock → dedup → claim
 * → plan under the lease → complete, or release when planning fails. Shared
 * by tabs (index.ts) and the service worker (sw.ts) so both follow the same
 * rules.
 *
 * The server decides who plans. A dedup mark only spares a request while the
 * occurrence is held or done elsewhere for the offer it answered: a nudge
 * with a higher `attempt` (the server offered it again after a release, an
 * expiry or a refusal) is taken again, and a mark left by a context that
 * died before its claim landed blocks nothing (its Web Lock is gone; the
 * claim tells).
 */
import type { DedupEntry, DedupState, DedupStore } from './dedup.js';
import type { MissionDue } from '../protocol.js';
import type { MissionClientEventBody } from './events.js';
import { PlanAborted, leaseLeft, underLease, untilAnswered } from './lease.js';
import { LOCK_PREFIX, withLockIfAvailable, type LockManagerLike } from './locks.js';
import type { OccurrenceApi, ReleaseCode } from './occurrences.js';
import { errorEvent, toError } from './timeout.js';

/**
 * The webapp's planner. `signal` aborts when this context lost the lease,
 * the time limit passed or the client is signing out: stop then, and do not
 * write the iteration.
 */
export type PlanFn = (missionId: string, iterationId: string, options: { signal: AbortSignal }) => Promise<{ steps: number } | void>;

export interface RunNudgeDeps {
  dedup: DedupStore;
  occurrences: OccurrenceApi;
  locks: LockManagerLike | null;
  plan: PlanFn;
  emit: (event: MissionClientEventBody) => void;
  /** The signed-in user, stamped on marks so sign-out can forget them. */
  user?: () => string | undefined;
  /** The caller stopping: planning is cancelled (and released), retries end. */
  signal?: AbortSignal;
  /** Planning stops (and the occurrence is released) after this long (default 5 min). */
  planTimeoutMs?: number;
}

export type NudgeOutcome =
  | { kind: 'planned'; steps?: number; completed: boolean }
  | { kind: 'duplicate'; state?: DedupState }
  | { kind: 'locked' }
  | { kind: 'elsewhere'; status: number; code: string }
  /** Planning failed, timed out or was cancelled; the occurrence was given back with `code`. */
  | { kind: 'released'; code: ReleaseCode; error: Error }
  /** The lease was lost while planning: another party holds it now. */
  | { kind: 'lost' }
  /** The claim got no answer, after retries. */
  | { kind: 'failed'; error: Error };

export const DEFAULT_PLAN_TIMEOUT_MS = 5 * 60_000;

/** Claim retries when the answer was lost: 1, 2, 4 s. */
const claimDelay = (i: number): number | undefined => (i < 3 ? 1000 * 2 ** i : undefined);
/** Completion is retried until it lands or the server refuses it: 1 s doubling to 30 s. */
const completeDelay = (i: number): number => Math.min(30_000, 1000 * 2 ** i);

/**
 * Whether a mark spares this nudge a claim (pure): done here, or held or done
 * elsewhere for this offer or a later one.
 */
export function suppresses(entry: DedupEntry | undefined, attempt: number | undefined): boolean {
  if (!entry) return false;
  if (entry.state === 'planned' || entry.state === 'staged') return true;
  return entry.state === 'elsewhere' && (attempt ?? 1) <= (entry.attempt ?? 1);
}

/** A note for operators without content: the error's class name, or how long planning ran. */
function noteOf(error: Error, code: ReleaseCode, timeoutMs: number): string {
  if (code === 'plan-timeout') return `after ${Math.round(timeoutMs / 1000)} s`;
  return /^[\w.-]{1,40}$/.test(error.name) ? error.name : 'Error';
}

/**
 * Runs the whole device-side protocol for one nudge. Never throws: every
 * outcome is returned (and emitted), because callers are event handlers.
 */
export async function runNudge(nudge: MissionDue, deps: RunNudgeDeps): Promise<NudgeOutcome> {
  const { missionId, iterationId } = nudge;
  const { dedup, occurrences, emit, signal } = deps;
  const attempt = nudge.attempt ?? 1;
  const planTimeoutMs = deps.planTimeoutMs ?? DEFAULT_PLAN_TIMEOUT_MS;
  const mark = (state: DedupState) => {
    const user = deps.user?.();
    return dedup.set(iterationId, { state, attempt, ...(user === undefined ? {} : { user }) }).catch(() => undefined);
  };
  const fail = (stage: 'claim' | 'plan' | 'complete' | 'release', error: Error) => emit(errorEvent(stage, error, iterationId));

  async function handle(): Promise<NudgeOutcome> {
    const entry = await dedup.get(iterationId).catch(() => undefined);
    if (suppresses(entry, attempt)) {
      emit({ type: 'skipped', missionId, iterationId, reason: 'duplicate', state: entry!.state });
      return { kind: 'duplicate', state: entry!.state };
    }

    const claim = await untilAnswered(() => occurrences.claim(iterationId), claimDelay, signal);
    if (claim.kind === 'failed') {
      fail('claim', claim.error);
      return { kind: 'failed', error: claim.error };
    }
    if (claim.kind === 'elsewhere') {
      await mark('elsewhere');
      emit({ type: 'elsewhere', missionId, iterationId, status: claim.status, code: claim.code });
      return { kind: 'elsewhere', status: claim.status, code: claim.code };
    }
    await mark('claimed');
    emit({ type: 'claimed', missionId, iterationId, ...(claim.leaseExpiresAt ? { leaseExpiresAt: claim.leaseExpiresAt } : {}) });

    let steps: number | undefined;
    try {
      const result = await underLease((s) => deps.plan(missionId, iterationId, { signal: s }), {
        leaseMs: leaseLeft(claim, Date.now()),
        renew: () => occurrences.claim(iterationId),
        timeoutMs: planTimeoutMs,
        ...(signal ? { signal } : {}),
      });
      steps = result ? result.steps : undefined;
    } catch (e: unknown) {
      const error = toError(e);
      fail('plan', error);
      if (e instanceof PlanAborted && e.code === 'lost') {
        await mark('elsewhere');
        return { kind: 'lost' };
      }
      const code: ReleaseCode = e instanceof PlanAborted ? (e.code === 'timeout' ? 'plan-timeout' : 'cancelled') : 'plan-failed';
      const released = await untilAnswered(() => occurrences.release(iterationId, code, noteOf(error, code, planTimeoutMs)), claimDelay);
      // Not given back: the lease running out is the server's safety net.
      if (released.kind === 'failed') fail('release', released.error);
      // The server plans it now, or hands it back to devices with a higher attempt.
      await mark('elsewhere');
      emit({ type: 'released', missionId, iterationId, reason: code });
      return { kind: 'released', code, error };
    }

    await mark('planned');
    const done = await untilAnswered(() => occurrences.complete(iterationId), completeDelay, signal);
    // Refused: the server settled it meanwhile (it sees the iteration in the log too).
    const completed = done.kind === 'granted';
    if (done.kind === 'failed') fail('complete', done.error);
    emit({ type: 'planned', missionId, iterationId, ...(steps === undefined ? {} : { steps }), completed });
    return steps === undefined ? { kind: 'planned', completed } : { kind: 'planned', steps, completed };
  }

  try {
    const result = await withLockIfAvailable(deps.locks, LOCK_PREFIX + iterationId, handle);
    if (!result.acquired) {
      emit({ type: 'skipped', missionId, iterationId, reason: 'locked' });
      return { kind: 'locked' };
    }
    return result.value;
  } catch (e: unknown) {
    emit(errorEvent('dedup', e, iterationId));
    return { kind: 'failed', error: toError(e) };
  }
}
