/**
 * Which settle a sweep runs: every open occurrence (full), only those of the
 * missions a refresh changed (targeted), or none. Pure.
 *
 * Missions change only through a refresh. The missions a refresh changed have
 * their occurrences settled at once; when there were too many to list (or
 * nobody knows which), only a full settle covers them, so it is owed until it
 * has run — a backlog (which holds the periodic full settle back) or the duty
 * cycle may delay it, never drop it. The full settle also runs every
 * SETTLE_EVERY_MS outside a backlog, for creates racing another instance's
 * refresh. It reads every open occurrence (1–2 s with 100,000 open), so once
 * slow it takes at most a tenth of the time.
 */

/** The periodic full settle, outside a backlog. */
export const SETTLE_EVERY_MS = 2_000;
/** A full settle slower than SETTLE_CHEAP_MS waits this many times its duration before the next starts: ≤ 10 % of the time. */
export const SETTLE_DUTY = 10;
export const SETTLE_CHEAP_MS = 100;

export interface SettleHistory {
  /** When the last full settle started (ms), and how long it took. */
  lastFullAt: number;
  lastFullMs: number;
  /** A full settle is owed: missions changed that no targeted settle could name. */
  owed: boolean;
}

export interface SettleInput {
  /** The missions changed since the last sweep; null or undefined: unknown (too many, or not told). */
  changed: readonly unknown[] | null | undefined;
  /** Passes are following each other at once: the periodic full settle waits. */
  backlog: boolean;
  now: number;
}

export type SettleStep = 'full' | 'targeted' | 'none';

/** The step to run now, and whether a full settle stays owed after it. */
export function settlePlan(input: SettleInput, h: SettleHistory): { step: SettleStep; owed: boolean } {
  const owed = h.owed || input.changed === null || input.changed === undefined;
  const due = owed || (!input.backlog && input.now - h.lastFullAt >= SETTLE_EVERY_MS);
  const allowed = h.lastFullMs < SETTLE_CHEAP_MS || input.now - h.lastFullAt >= SETTLE_DUTY * h.lastFullMs;
  if (due && allowed) return { step: 'full', owed: false };
  if (input.changed && input.changed.length > 0) return { step: 'targeted', owed };
  return { step: 'none', owed };
}
