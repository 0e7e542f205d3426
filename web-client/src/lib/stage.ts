/**
 * Staging server-planned iterations (`source: 'server'`): an optional hook
 * called once per iteration id on this origin, across tabs and reloads. The
 * webapp runs a server iteration's steps on arrival itself (with its own
 * once-per-device marker); this hook is for an app that wants its own
 * reaction to a server plan (a notice, local proposals) without its own
 * bookkeeping.
 */
import type { MissionIteration } from '../../../src/projection/mission.js';
import { DEFAULT_DEDUP_MAX_AGE_MS, type DedupEntry, type DedupStore } from './dedup.js';
import type { MissionClientEventBody } from './events.js';
import { LOCK_PREFIX, withLockIfAvailable, type LockManagerLike } from './locks.js';
import { errorEvent } from './timeout.js';

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

/** The key of an iteration's staging record: apart from its nudge mark, which a late nudge may rewrite. */
export const stageKey = (iterationId: string): string => `stage:${iterationId}`;

/** A 'staging' record this old, with no Web Lock to tell, is taken as left by a context that died mid-way. */
const STAGING_STALE_MS = 5 * 60_000;

export interface StageOptions extends StageDeps {
  /** Server iterations that started longer ago than this are not staged (default 7 days, the records' own lifetime). */
  maxAgeMs?: number;
  user?: () => string | undefined;
}

/** Whether the iteration is recent enough to stage: within the records' lifetime, so a forgotten record never means a second staging (pure). */
export function stageable(iteration: MissionIteration, now: number, maxAgeMs: number): boolean {
  const started = Date.parse(String(iteration.startedAt));
  return Number.isFinite(started) && now - started <= maxAgeMs;
}

/**
 * Stages each new server iteration of `mission`; resolves to the ids staged by this call.
 *
 * Exactly once per browser where IndexedDB works: a `staging` record is
 * written in the same transaction that decides (or under the iteration's Web
 * Lock), `staged` after the hook returns. A context that dies while the hook
 * runs leaves `staging`; the next one stages again (at least once in that
 * case: make the hook idempotent per step id). Where IndexedDB fails the
 * records live in this context's memory: at least once, once per context.
 */
export async function stageServerIterations(mission: MissionLike, deps: StageOptions): Promise<string[]> {
  const staged: string[] = [];
  const now = Date.now();
  for (const iteration of serverIterations(mission)) {
    if (!stageable(iteration, now, deps.maxAgeMs ?? DEFAULT_DEDUP_MAX_AGE_MS)) continue;
    if (await stageOne(mission.id, iteration, deps)) staged.push(iteration.id);
  }
  return staged;
}

async function stageOne(missionId: string, iteration: MissionIteration, deps: StageOptions): Promise<boolean> {
  const { dedup, emit } = deps;
  const iterationId = iteration.id;
  const key = stageKey(iterationId);
  const user = deps.user?.();
  const mark = (state: 'staging' | 'staged') => ({ state, ...(user === undefined ? {} : { user }) });
  // Holding the lock, a 'staging' record is a dead context's (a live one would hold the lock).
  const blocks = (live: DedupEntry) => live.state === 'staged' || (live.state === 'staging' && !deps.locks && Date.now() - live.at < STAGING_STALE_MS);
  try {
    const result = await withLockIfAvailable(deps.locks, LOCK_PREFIX + iterationId, async () => {
      // Planned here, or staged by a version that kept one record per id: its proposals exist already.
      const own = (await dedup.get(iterationId))?.state;
      if (own === 'planned' || own === 'staged') return false;
      if (!(await dedup.markUnless(key, mark('staging'), blocks))) return false;
      try {
        await deps.stageIteration(missionId, iteration);
      } catch (e: unknown) {
        await dedup.forget(key).catch(() => undefined);
        throw e;
      }
      await dedup.set(key, mark('staged'));
      return true;
    });
    if (!result.acquired || !result.value) return false;
  } catch (e: unknown) {
    emit(errorEvent('stage', e, iterationId));
    return false;
  }
  emit({ type: 'staged', missionId, iterationId, steps: Array.isArray(iteration.plan) ? iteration.plan.length : 0 });
  return true;
}
