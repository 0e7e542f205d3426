/**
 * Cleanup registered as resources are acquired, released last-in-first-out,
 * once. A failing releaser is logged and does not stop the others.
 */
import type { Logger } from './log.js';
import { isConnectionError } from './db/errors.js';

export function createReleasers(log: Logger) {
  const stack: (() => Promise<void> | void)[] = [];
  let releasing: Promise<void> | undefined;
  return {
    add(fn: () => Promise<void> | void) {
      stack.push(fn);
    },
    releaseAll(): Promise<void> {
      releasing ??= (async () => {
        while (stack.length > 0) {
          const fn = stack.pop()!;
          try {
            await fn();
          } catch (err: unknown) {
            // Ctrl-C in a terminal reaches the embedded Postgres too (same process
            // group), which stops at once: a step that needed it has nothing left to undo.
            if (isConnectionError(err)) log.debug({ err }, 'cleanup step skipped: the database is already gone');
            else log.error({ err }, 'cleanup step failed');
          }
        }
      })();
      return releasing;
    },
  };
}
