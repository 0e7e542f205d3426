/** Time-boxing promises that may never settle (offline `pushManager.subscribe`), and caught values as errors. */
import type { ErrorStage, MissionClientEventBody } from './events.js';

/** Error raised by {@link withTimeout}; `code` is stable for callers to test. */
export class TimeoutError extends Error {
  readonly code = 'timeout';
  constructor(message: string) {
    super(message);
    this.name = 'TimeoutError';
  }
}

/**
 * Settles like `promise`, or rejects with a {@link TimeoutError} carrying
 * `message` after `ms`. The timer is always cleared.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new TimeoutError(message)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A caught value as an Error (normalised once, never mutated). */
export function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(typeof e === 'string' ? e : JSON.stringify(e));
}

/** An `error` event for whatever was caught at `stage`. */
export function errorEvent(stage: ErrorStage, e: unknown, iterationId?: string): MissionClientEventBody {
  const error = toError(e);
  return { type: 'error', stage, message: error.message, error, ...(iterationId === undefined ? {} : { iterationId }) };
}
