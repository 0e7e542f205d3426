/**
 * Handling one due occurrence on this device: lock → dedup → claim → plan →
 * complete, or release when planning fails. Shared by tabs (index.ts) and the
 * service worker (sw.ts) so both follow the same rules.
 */
import type { DedupState, DedupStore } from '../dedup.js';
import type { MissionDue } from '../protocol.js';
import type { MissionClientEventBody } from './events.js';
import { LOCK_PREFIX, withLockIfAvailable, type LockManagerLike } from './locks.js';
import type { OccurrenceApi } from './occurrences.js';
import { toError } from './timeout.js';

export type PlanFn = (missionId: string, iterationId: string) => Promise<{ steps: number } | void>;

export interface RunNudgeDeps {
  dedup: DedupStore;
  occurrences: OccurrenceApi;
  locks: LockManagerLike | null;
  plan: PlanFn;
  emit: (event: MissionClientEventBody) => void;
}

export type NudgeOutcome =
  | { kind: 'planned'; steps?: number; completed: boolean }
  | { kind: 'duplicate'; state?: DedupState }
  | { kind: 'locked' }
  | { kind: 'elsewhere'; status: number; code: string }
  | { kind: 'released'; error: Error }
  /** The claim got no answer; the dedup mark was removed so a later nudge can retry. */
  | { kind: 'failed'; error: Error };

/**
 * Runs the whole device-side protocol for one nudge. Never throws: every
 * outcome is returned (and emitted), because callers are event handlers.
 */
export async function runNudge(nudge: MissionDue, deps: RunNudgeDeps): Promise<NudgeOutcome> {
  const { missionId, iterationId } = nudge;
  const { dedup, occurrences, emit } = deps;

  async function handle(): Promise<NudgeOutcome> {
    let fresh: boolean;
    try {
      fresh = await dedup.markIfNew(iterationId, 'seen');
    } catch (e: unknown) {
      // Without the shared store we cannot tell whether another tab planned it;
      // the server's claim still decides, so carry on rather than drop the nudge.
      const error = toError(e);
      emit({ type: 'error', stage: 'dedup', message: error.message, iterationId, error });
      fresh = true;
    }
    if (!fresh) {
      const state = (await dedup.get(iterationId).catch(() => undefined))?.state;
      emit({ type: 'skipped', missionId, iterationId, reason: 'duplicate', ...(state ? { state } : {}) });
      return state ? { kind: 'duplicate', state } : { kind: 'duplicate' };
    }

    const claim = await occurrences.claim(iterationId);
    if (claim.kind === 'failed') {
      await dedup.forget(iterationId).catch(() => undefined);
      emit({ type: 'error', stage: 'claim', message: claim.error.message, iterationId, error: claim.error });
      return { kind: 'failed', error: claim.error };
    }
    if (claim.kind === 'elsewhere') {
      await dedup.set(iterationId, 'elsewhere').catch(() => undefined);
      emit({ type: 'elsewhere', missionId, iterationId, status: claim.status, code: claim.code });
      return { kind: 'elsewhere', status: claim.status, code: claim.code };
    }

    await dedup.set(iterationId, 'claimed').catch(() => undefined);
    emit({ type: 'claimed', missionId, iterationId, ...(claim.leaseExpiresAt ? { leaseExpiresAt: claim.leaseExpiresAt } : {}) });

    let steps: number | undefined;
    try {
      const result = await deps.plan(missionId, iterationId);
      steps = result ? result.steps : undefined;
    } catch (e: unknown) {
      const error = toError(e);
      emit({ type: 'error', stage: 'plan', message: error.message, iterationId, error });
      try {
        await occurrences.release(iterationId, error.message);
      } catch (releaseErr: unknown) {
        // The lease expiring is the server's safety net when release is lost.
        const err = toError(releaseErr);
        emit({ type: 'error', stage: 'release', message: err.message, iterationId, error: err });
      }
      // The server plans it now; its iteration will be staged like any other.
      await dedup.set(iterationId, 'elsewhere').catch(() => undefined);
      emit({ type: 'released', missionId, iterationId, reason: error.message });
      return { kind: 'released', error };
    }

    await dedup.set(iterationId, 'planned').catch(() => undefined);
    let completed = true;
    try {
      await occurrences.complete(iterationId);
    } catch (e: unknown) {
      // The plan is written; the server also sees completion when the
      // iteration reaches the projection, so this is reported, not retried.
      completed = false;
      const error = toError(e);
      emit({ type: 'error', stage: 'complete', message: error.message, iterationId, error });
    }
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
    const error = toError(e);
    emit({ type: 'error', stage: 'dedup', message: error.message, iterationId, error });
    return { kind: 'failed', error };
  }
}
