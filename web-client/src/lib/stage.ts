/**
 * Staging server-planned iterations (`source: 'server'`) into local proposals,
 * once per iteration id on this origin, across tabs and reloads.
 */
import type { MissionIteration } from '../../../src/projection/mission.js';
import type { DedupStore } from '../dedup.js';
import type { MissionClientEventBody } from './events.js';
import { LOCK_PREFIX, withLockIfAvailable, type LockManagerLike } from './locks.js';
import { toError } from './timeout.js';

export type { MissionIteration };

/** The least of a Mission record this needs; records come from sync, so the rest is checked. */
export interface MissionLike {
  id: string;
  iterations?: unknown;
}

export type StageFn = (missionId: string, iteration: MissionIteration) => Promise<void>;

export interface StageDeps {
  dedup: DedupStore;
  locks: LockManagerLike | null;
  stageIteration: StageFn;
  emit: (event: MissionClientEventBody) => void;
}

/** The server-planned iterations of a mission record, tolerating whatever a device wrote (pure). */
export function serverIterations(mission: MissionLike): MissionIteration[] {
  const its = mission.iterations;
  if (!Array.isArray(its)) return [];
  return its.filter(
    (it): it is MissionIteration =>
      typeof it === 'object' &&
      it !== null &&
      typeof (it as { id?: unknown }).id === 'string' &&
      (it as { source?: unknown }).source === 'server',
  );
}

/**
 * An iteration already staged here, or planned by this device itself, is not
 * staged again (its proposals exist locally already).
 */
const STAGE_BLOCKERS = ['staged', 'planned'] as const;

/** Stages each new server iteration of `mission`; resolves to the ids staged by this call. */
export async function stageServerIterations(mission: MissionLike, deps: StageDeps): Promise<string[]> {
  const staged: string[] = [];
  for (const iteration of serverIterations(mission)) {
    if (await stageOne(mission.id, iteration, deps)) staged.push(iteration.id);
  }
  return staged;
}

async function stageOne(missionId: string, iteration: MissionIteration, deps: StageDeps): Promise<boolean> {
  const { dedup, emit } = deps;
  const iterationId = iteration.id;
  const report = (e: unknown): false => {
    const error = toError(e);
    emit({ type: 'error', stage: 'stage', message: error.message, iterationId, error });
    return false;
  };
  const done = () => emit({ type: 'staged', missionId, iterationId, steps: Array.isArray(iteration.plan) ? iteration.plan.length : 0 });

  if (deps.locks) {
    // With a lock held, check → stage → mark: a tab that dies mid-way leaves
    // no mark, so the next load stages it (at-least-once beats lost proposals;
    // stageIteration should be idempotent per step id anyway).
    try {
      const result = await withLockIfAvailable(deps.locks, LOCK_PREFIX + iterationId, async () => {
        const entry = await dedup.get(iterationId);
        if (entry && (STAGE_BLOCKERS as readonly string[]).includes(entry.state)) return false;
        await deps.stageIteration(missionId, iteration);
        await dedup.set(iterationId, 'staged');
        return true;
      });
      if (result.acquired && result.value) done();
      return result.acquired && result.value;
    } catch (e: unknown) {
      return report(e);
    }
  }

  // No Web Locks: the atomic mark decides who stages; undo it on failure.
  let marked: boolean;
  try {
    const previous = await dedup.get(iterationId);
    marked = await dedup.markUnless(iterationId, 'staged', STAGE_BLOCKERS);
    if (!marked) return false;
    try {
      await deps.stageIteration(missionId, iteration);
    } catch (e: unknown) {
      await (previous ? dedup.set(iterationId, previous.state) : dedup.forget(iterationId)).catch(() => undefined);
      return report(e);
    }
  } catch (e: unknown) {
    return report(e);
  }
  done();
  return true;
}
