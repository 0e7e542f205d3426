/**
 * The seams between a pass and the parts it drives (routing, the occurrence
 * lifecycle, the server planner). They live here, below all of them, so no
 * import has to point back up: the planner implements FallbackPlanner
 * without knowing the router, the router implements Dispatch and Prepare
 * without knowing the pass.
 */
import type { DueMission } from './due.js';
import type { Occurrence } from './occurrence.js';

/**
 * Receives the due missions of a pass; the router creates and routes
 * occurrences. Returns how many it left for a later pass on purpose (a push
 * waiting for the user's next mission), so the next scan looks at them again.
 */
export type Dispatch = (due: DueMission[]) => Promise<void | { deferred: number }>;

/** What a sweep may want to know about its pass. */
export interface SweepInfo {
  /** This pass's projection refresh applied rows: missions changed. */
  projectionChanged: boolean;
  /** Passes are following each other at once (a backlog of due missions): no upkeep that can wait. */
  backlog?: boolean;
  /** Which missions, when known (null or absent: too many, or unknown). */
  changed?: { userId: string; missionId: string }[] | null;
  /** False when the pass's scan found no passed claim deadline or lease (the expiry scan is skipped). */
  expiries?: boolean;
  /** False when the pass's scan found no waiting occurrence whose retry came. */
  retries?: boolean;
}

/** Per-pass upkeep after dispatch: settle, expire, retry occurrences. */
export type Sweep = (info: SweepInfo) => Promise<void>;

/** Receives missions about to fall due, to be readied ahead of their due instant. */
export type Prepare = (upcoming: DueMission[]) => Promise<void>;

/** The server's own planner; takes ownership of an occurrence in status 'planning' it holds. */
export interface FallbackPlanner {
  /** False when server planning is off (no LLM): occurrences then wait for a device. */
  readonly enabled: boolean;
  plan(occurrence: Occurrence): void;
}
