/**
 * Keeps this instance's presence rows alive and sweeps other instances'
 * expired ones, a few times per TTL.
 */
import type { Logger } from '../log.js';

export interface PresenceKeeper {
  heartbeat(): Promise<unknown>;
  sweep(): Promise<unknown>;
}

/** Starts the timer; the returned function stops it. */
export function startPresenceTimer(presence: PresenceKeeper, ttlMs: number, log: Logger): () => void {
  const timer = setInterval(() => {
    presence
      .heartbeat()
      .then(() => presence.sweep())
      .catch((err: unknown) => log.debug({ err }, 'presence heartbeat failed'));
  }, Math.max(1000, Math.floor(ttlMs / 3)));
  timer.unref();
  return () => clearInterval(timer);
}
