/**
 * Tells the user's devices at once that the server wrote to one of their
 * missions (a plan, a failed iteration, a repaired write), so the app pulls
 * the mission now instead of at its next lazy pull of the `ai` tables.
 *
 * Sockets on this instance get `{type:'mission-changed', missionId,
 * iterationId}` right away. For the rest, the writes of a short window
 * (MISSION_CHANGED_BATCH_MS) are batched: one presence lookup finds the users
 * with a socket on another instance, and one NOTIFY statement carries them
 * there (most server plans are for users with no device online, who need
 * none). Write-backs finish one by one as their LLM calls return, so a batch
 * per turn of the event loop was a lookup, a round trip to Postgres, per
 * plan; the window costs a remote device at most its length. Like a nudge,
 * this is a hint: a failure is logged, never retried.
 */
import type { Logger } from '../log.js';
import type { MissionChange } from './nudge-bus.js';
import type { MissionChanged } from './protocol.js';

export interface MissionChangeNotifierDeps {
  /** Sends to this instance's sockets of the user; returns how many got it. */
  deliverLocal: (userId: string, frame: MissionChanged) => number;
  /** Users (of the given ones) with a live socket on another instance. */
  elsewhere: (userIds: string[]) => Promise<Set<string>>;
  publish: (changes: MissionChange[]) => Promise<void>;
  log: Logger;
  /** How long writes are gathered before one lookup (default MISSION_CHANGED_BATCH_MS). */
  batchMs?: number;
}

/** The window of writes one presence lookup covers: short beside the second a device may wait. */
export const MISSION_CHANGED_BATCH_MS = 25;

export interface MissionChangeNotifier {
  /** Reports a committed server write to the user's mission. */
  notify(change: { userId: string; missionId: string; iterationId?: string }): void;
  /** Resolves when every batch handed to other instances is sent (tests, shutdown). */
  drain(): Promise<void>;
}

export function createMissionChangeNotifier(deps: MissionChangeNotifierDeps): MissionChangeNotifier {
  let pending: MissionChange[] = [];
  let timer: NodeJS.Timeout | undefined;
  const inFlight = new Set<Promise<void>>();
  const batchMs = deps.batchMs ?? MISSION_CHANGED_BATCH_MS;

  async function forward(batch: MissionChange[]): Promise<void> {
    try {
      const remote = await deps.elsewhere([...new Set(batch.map((c) => c.userId))]);
      const changes = batch.filter((c) => remote.has(c.userId));
      if (changes.length > 0) await deps.publish(changes);
    } catch (err: unknown) {
      deps.log.warn({ err, changes: batch.length }, 'mission-changed not passed to other instances; their devices pull on their own');
    }
  }

  function flush(): void {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    const sent = forward(batch).finally(() => inFlight.delete(sent));
    inFlight.add(sent);
  }

  return {
    notify({ userId, missionId, iterationId }) {
      const frame: MissionChanged = { type: 'mission-changed', missionId, ...(iterationId ? { iterationId } : {}) };
      deps.deliverLocal(userId, frame);
      // Not unref'd: a write's change is sent before the process ends (drain() at shutdown sends it at once).
      if (pending.length === 0) timer = setTimeout(flush, batchMs);
      pending.push({ userId, frame });
    },
    async drain() {
      while (pending.length > 0 || inFlight.size > 0) {
        if (pending.length > 0) flush();
        await Promise.all([...inFlight]);
      }
    },
  };
}
