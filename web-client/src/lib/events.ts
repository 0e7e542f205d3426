/** Events a mission client emits, for UIs, logs and tests. */
import type { DedupState } from './dedup.js';

/** How a nudge reached this context. */
export type NudgeSource = 'ws' | 'push' | 'catch-up';

/** Where an `error` event came from. */
export type ErrorStage =
  | 'connect'
  | 'socket'
  | 'claim'
  | 'plan'
  | 'complete'
  | 'release'
  | 'stage'
  | 'push'
  | 'catch-up'
  | 'dedup';

export type MissionClientEventBody =
  | { type: 'connected'; userId: string; deviceId: string }
  | { type: 'disconnected'; code: number; reason: string; willReconnect: boolean; reconnectInMs?: number }
  | { type: 'nudge'; missionId: string; iterationId: string; dueAt: string; via: NudgeSource }
  /** Not handled here: already handled (`duplicate`, with the stored state) or another tab/worker holds it (`locked`). */
  | { type: 'skipped'; missionId: string; iterationId: string; reason: 'duplicate' | 'locked'; state?: DedupState }
  | { type: 'claimed'; missionId: string; iterationId: string; leaseExpiresAt?: string }
  | { type: 'planned'; missionId: string; iterationId: string; steps?: number; completed: boolean }
  /** Planning failed, timed out or was cancelled; the occurrence was given back (`reason`: the code sent). */
  | { type: 'released'; missionId: string; iterationId: string; reason: string }
  /** The server refused the claim: 409 held by another party, 410 done/superseded, 404 unknown. */
  | { type: 'elsewhere'; missionId: string; iterationId: string; status: number; code: string }
  | { type: 'staged'; missionId: string; iterationId: string; steps: number }
  /** The server wrote to this mission (a plan, a failed run, a repair): pull it from mana-sync now. */
  | { type: 'mission-changed'; missionId: string; iterationId?: string }
  | { type: 'push-enabled'; renewed: boolean; endpointOrigin: string }
  | { type: 'push-disabled' }
  /** Something degraded without failing: `storage-fallback` (IndexedDB failed; this context keeps its marks in memory). */
  | { type: 'warning'; code: 'storage-fallback'; message: string }
  /** signOut finished: push unsubscribed, the socket closed, this user's `cleared` records forgotten. */
  | { type: 'signed-out'; cleared: number }
  | { type: 'error'; stage: ErrorStage; message: string; iterationId?: string; error: Error };

/** Every event carries `at` (epoch ms). */
export type MissionClientEvent = MissionClientEventBody & { at: number };
export type MissionClientEventType = MissionClientEvent['type'];
export type MissionClientListener = (event: MissionClientEvent) => void;

export interface Emitter {
  emit(event: MissionClientEventBody): void;
  on(listener: MissionClientListener): () => void;
}

/** A tiny emitter; a throwing listener is reported to `onListenerError`, never to the emitter. */
export function createEmitter(onListenerError: (err: unknown) => void = () => undefined): Emitter {
  const listeners = new Set<MissionClientListener>();
  return {
    emit(body) {
      const event = { ...body, at: Date.now() } as MissionClientEvent;
      for (const listener of [...listeners]) {
        try {
          listener(event);
        } catch (e: unknown) {
          onListenerError(e);
        }
      }
    },
    on(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}

