/**
 * The scheduler around one pass: how far ahead a pass readies missions, and
 * an outage reporter that logs a database outage once when it starts and
 * once when it ends, not once per pass.
 */
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

/**
 * How far ahead a pass readies missions about to fall due: two intervals, so
 * every mission is seen by at least one pass before its due instant, capped
 * so that the presence it is routed on is at most a few seconds old.
 */
export function prepareAheadMs(intervalMs: number): number {
  return Math.min(5000, Math.max(1000, 2 * intervalMs));
}

export function createOutageReporter(log: Logger, metrics: Metrics) {
  let failingSince: number | null = null;
  return {
    onError(err: unknown) {
      metrics.dbErrors.inc({ code: (err as { code?: string }).code ?? 'unknown' });
      if (failingSince === null) {
        failingSince = Date.now();
        log.error({ err }, 'scheduler pass failed; retrying every interval until it succeeds');
      }
    },
    onSuccess() {
      if (failingSince === null) return;
      log.warn({ downMs: Date.now() - failingSince }, 'scheduler passes succeed again');
      failingSince = null;
    },
  };
}

/**
 * Requests for a pass soon (a released claim, a dev write), made by parts
 * built before the scheduler that serves them: they hold this, the
 * scheduler subscribes once it exists. Requests before then are dropped
 * (the scheduler's first pass sees everything anyway).
 */
export function createPassRequests() {
  let handler: (() => void) | undefined;
  return {
    request(): void {
      handler?.();
    },
    serveWith(fn: () => Promise<unknown>): void {
      handler = () => void fn().catch(() => undefined);
    },
  };
}
