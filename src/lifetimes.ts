/**
 * Cleanup registered as resources are acquired, released last-in-first-out,
 * once. A failing releaser is logged and does not stop the others.
 */
import type { Logger } from './log.js';

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
            log.error({ err }, 'cleanup step failed');
          }
        }
      })();
      return releasing;
    },
  };
}
