/**
 * The occurrence lifecycle: every transition an instance drives, in one
 * place. Creation (due now, or readied ahead), nudge, hand-over to the
 * server planner or to waiting, expiry of claim deadlines and leases, retry
 * of waiting occurrences, the stale-created safety net, settling from the
 * mission log — each a batched statement from transitions.ts, so a burst of
 * 100,000 costs a few statements, not a round trip per occurrence.
 *
 * Routing decisions are not made here: where an occurrence goes is the
 * router's (nudge/router.ts), which calls back in with its decision.
 */
import { Counter, type Registry } from 'prom-client';
import type { Sql } from '../db/pool.js';
import { withoutQuotes, type Logger } from '../log.js';
import type { DueMission } from './due.js';
import type { FallbackPlanner, SweepInfo } from './interfaces.js';
import { serverHolder, type Occurrence, type OccurrenceStatus } from './occurrence.js';
import {
  createOccurrences,
  type CreateOptions,
  type StartAs,
  markNudged,
  markWaitingMany,
  releaseReadied,
  settleFromSnapshots,
  takeExpired,
  takeForServer,
  takeStaleCreated,
  takeWaitingDue,
} from './transitions.js';
import { WAIT_REASON, waitBackoffMs } from './waiting.js';
import { reason, type Reason } from './reasons.js';
import { settlePlan, type SettleHistory } from './settle-plan.js';

/** Due missions per INSERT when a pass creates many occurrences at once. */
export const CREATE_CHUNK = 1000;
/** Rows per deadline, retry or stale scan; a full batch is followed by another at once. */
export const SCAN_BATCH = 5000;
/** At most this many batches per scan and pass, so a backlog never starves the next pass. */
const SCAN_ROUNDS = 4;

/** Why an occurrence went to the server planner when it was created. */
export const NO_DEVICE = reason('no-device', 'no reachable device');


/**
 * The lease an occurrence is handed to the server planner with. The planner
 * extends it to CLAIM_LEASE_MS as it takes the occurrence (within
 * milliseconds); until then nobody is working on it, so a crash (or a lost
 * connection after the commit) between the hand-over and the planner's start
 * must cost seconds, not the full lease.
 */
export const HANDOVER_LEASE_MS = 10_000;

/** A pass routes what it creates within milliseconds; 'created' this long past due means it never will (routing it twice is harmless: every step is a compare-and-set). */
export const STALE_CREATED_MS = 10_000;

export interface LifecycleDeps {
  sql: Sql;
  log: Logger;
  registry: Registry;
  instanceId: string;
  leaseMs: number;
  fallback: FallbackPlanner;
}

export interface SweepHooks {
  /** Routes occurrences again (waiting ones whose retry came, stale 'created' ones). */
  reroute(occs: Occurrence[]): Promise<void>;
  /** Occurrences the mission log closed (an armed nudge for one must not go out). */
  settled?(iterationIds: string[]): void;
}

export interface Lifecycle {
  /**
   * Creates the occurrences of due missions in chunks on several connections,
   * each already routed as `routeOf` decided (one write per occurrence):
   * 'ws' ones nudged and handed to `onNudged` per chunk (so frames go out
   * while the next chunk is written), 'fallback' ones handed to the server
   * planner (or waiting, when server planning is off). Returns the 'push'
   * ones, still 'created', for the router to send, and the first failed
   * chunk's error (a failed chunk wrote nothing, so the next pass finds its
   * missions due again).
   */
  createDue(
    due: DueMission[],
    routeOf: (d: DueMission) => 'ws' | 'push' | 'fallback',
    wsClaimMs: number,
    onNudged: (occs: Occurrence[]) => void | Promise<void>,
  ): Promise<{ rest: Occurrence[]; failure?: unknown }>;
  /** Creates ahead, already nudged (claim deadline from dueAt), the occurrences of these missions. */
  createAhead(upcoming: DueMission[], wsClaimMs: number): Promise<Occurrence[]>;
  /** Deletes occurrences readied ahead that will not be sent (shutdown). */
  releaseAhead(iterationIds: string[]): Promise<void>;
  /** created|waiting → nudged on a channel; returns the rows moved. */
  nudge(occs: Occurrence[], channel: 'ws' | 'push', deadlineMs: number): Promise<Occurrence[]>;
  /** Counts nudges sent for occurrences created already nudged. */
  countNudged(channel: 'ws' | 'push', n: number): void;
  /** → planning (server planner) or → waiting when server planning is off. */
  toFallback(occs: Occurrence[], from: OccurrenceStatus[], why: Reason): Promise<void>;
  /** Per-pass upkeep: settle, expire, retry waiting, rescue stale 'created'. */
  sweep(info: SweepInfo | undefined, hooks: SweepHooks): Promise<void>;
}

export function createLifecycle(deps: LifecycleDeps): Lifecycle {
  const { sql, log } = deps;
  const holder = serverHolder(deps.instanceId);
  const handoverMs = Math.min(deps.leaseMs, HANDOVER_LEASE_MS);
  const routed = new Counter({
    name: 'mana_ai_occurrences_routed_total',
    help: 'Occurrences routed, by channel (ws, push, server, wait)',
    labelNames: ['channel'] as const,
    registers: [deps.registry],
  });
  const expired = new Counter({
    name: 'mana_ai_occurrences_expired_total',
    help: 'Claim deadlines or leases that passed and went to the fallback',
    registers: [deps.registry],
  });
  const settles: SettleHistory = { lastFullAt: 0, lastFullMs: 0, owed: false };
  let lastStaleCheck = 0;

  async function toWaiting(occs: Occurrence[], from: OccurrenceStatus[], why: Reason, holderOnly?: string): Promise<void> {
    const items = occs.map((o) => ({ iterationId: o.iterationId, retryInMs: waitBackoffMs(o.routeAttempts) }));
    const moved = await markWaitingMany(sql, items, { from, reason: why, ...(holderOnly ? { holder: holderOnly } : {}) });
    routed.inc({ channel: 'wait' }, moved.length);
  }

  async function toFallback(occs: Occurrence[], from: OccurrenceStatus[], why: Reason): Promise<void> {
    if (occs.length === 0) return;
    if (!deps.fallback.enabled) return toWaiting(occs, from, WAIT_REASON);
    const taken = await takeForServer(sql, occs.map((o) => o.iterationId), from, holder, handoverMs, why);
    routed.inc({ channel: 'server' }, taken.length);
    for (const occ of taken) deps.fallback.plan(occ);
  }

  /** Runs `take` until it returns a short batch (or SCAN_ROUNDS batches), handing each batch to `use`. */
  async function scan(take: () => Promise<Occurrence[]>, use: (occs: Occurrence[]) => Promise<void>): Promise<void> {
    for (let round = 0; round < SCAN_ROUNDS; round++) {
      const batch = await take();
      if (batch.length > 0) await use(batch);
      if (batch.length < SCAN_BATCH) return;
    }
  }

  async function expire(): Promise<void> {
    await scan(
      () => takeExpired(sql, holder, handoverMs, SCAN_BATCH),
      async (taken) => {
        expired.inc(taken.length);
        const sample = taken.slice(0, 20).map((o) => ({ iterationId: o.iterationId, reason: withoutQuotes(o.lastError) }));
        log.info({ occurrences: taken.length, sample }, 'deadline or lease passed; handing to the fallback');
        if (deps.fallback.enabled) for (const occ of taken) deps.fallback.plan(occ);
        else await toWaiting(taken, ['planning'], WAIT_REASON, holder);
      },
    );
  }

  function announce(settled: { iterationId: string }[], hooks: SweepHooks): void {
    if (settled.length === 0) return;
    log.info({ settled: settled.length }, 'occurrences settled from the mission log');
    hooks.settled?.(settled.map((o) => o.iterationId));
  }

  return {
    async createDue(due, routeOf, wsClaimMs, onNudged) {
      const fallbackStart: StartAs = deps.fallback.enabled ? 'server' : 'wait';
      const opts: CreateOptions = {
        startAs: (d) => {
          const route = routeOf(d);
          return route === 'ws' ? 'ws' : route === 'push' ? 'created' : fallbackStart;
        },
        wsDeadlineMs: wsClaimMs,
        server: { holder, leaseMs: handoverMs, reason: NO_DEVICE },
        wait: { reason: WAIT_REASON, retryInMs: waitBackoffMs(0) },
      };
      const chunks: DueMission[][] = [];
      for (let i = 0; i < due.length; i += CREATE_CHUNK) chunks.push(due.slice(i, i + CREATE_CHUNK));
      const rest: Occurrence[] = [];
      let count = 0;
      const results = await Promise.allSettled(
        chunks.map(async (chunk) => {
          const created = await createOccurrences(sql, chunk, opts);
          count += created.length;
          const nudged: Occurrence[] = [];
          let planning = 0;
          let waiting = 0;
          for (const o of created) {
            if (o.status === 'nudged') nudged.push(o);
            else if (o.status === 'waiting') waiting++;
            else if (o.status !== 'planning') rest.push(o);
            else {
              planning++;
              deps.fallback.plan(o);
            }
          }
          routed.inc({ channel: 'server' }, planning);
          routed.inc({ channel: 'wait' }, waiting);
          if (nudged.length > 0) {
            routed.inc({ channel: 'ws' }, nudged.length);
            await onNudged(nudged);
          }
        }),
      );
      if (count > 0) log.info({ created: count }, 'occurrences created');
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      return failed ? { rest, failure: failed.reason } : { rest };
    },
    async createAhead(upcoming, wsClaimMs) {
      if (upcoming.length === 0) return [];
      return createOccurrences(sql, upcoming, { startAs: () => 'ws', wsDeadlineMs: wsClaimMs });
    },
    async releaseAhead(iterationIds) {
      if (iterationIds.length === 0) return;
      await releaseReadied(sql, iterationIds).catch((err: unknown) => log.warn({ err }, 'could not release occurrences created ahead; the stale sweep routes them'));
    },
    async nudge(occs, channel, deadlineMs) {
      const moved = await markNudged(sql, occs.map((o) => o.iterationId), channel, deadlineMs);
      routed.inc({ channel }, moved.length);
      return moved;
    },
    countNudged(channel, n) {
      routed.inc({ channel }, n);
    },
    toFallback,
    async sweep(info, hooks) {
      // The missions this pass's refresh changed have their occurrences settled at once; an
      // unknown set, and creates racing another instance's refresh, by the full settle
      // (settle-plan.ts says which runs when).
      const now = Date.now();
      const changed = info?.projectionChanged === false ? [] : info?.changed;
      const plan = settlePlan({ changed, backlog: Boolean(info?.backlog), now }, settles);
      // A settle that fails leaves a full one owed: the changes it was to settle are not listed again.
      settles.owed = plan.step === 'none' ? plan.owed : true;
      if (plan.step === 'full') {
        settles.lastFullAt = now;
        announce(await settleFromSnapshots(sql), hooks);
        settles.lastFullMs = Date.now() - now;
      } else if (plan.step === 'targeted') {
        announce(await settleFromSnapshots(sql, changed!), hooks);
      }
      settles.owed = plan.owed;
      // The pass's scan says whether anything is there to take: a no-op pass skips the scans.
      if (info?.expiries !== false) await expire();
      // Waiting occurrences whose retry time came go through routing again (a device may be back).
      if (info?.retries !== false) await scan(() => takeWaitingDue(sql, SCAN_BATCH), hooks.reroute);
      // A safety net for crashes: every pass would be wasted work on the open set.
      if (now - lastStaleCheck < STALE_CREATED_MS / 3) return;
      lastStaleCheck = now;
      await scan(
        () => takeStaleCreated(sql, STALE_CREATED_MS, SCAN_BATCH),
        async (stranded) => {
          log.warn({ occurrences: stranded.length }, 'routing occurrences left unrouted by a failed or crashed pass');
          await hooks.reroute(stranded);
        },
      );
    },
  };
}

/** The per-pass sweep: the lifecycle's (through the router) and then the planner's own, each once. */
export function passSweep(...parts: ({ sweep(info: SweepInfo): Promise<void> } | undefined)[]): (info: SweepInfo) => Promise<void> {
  return async function sweepPass(info) {
    for (const part of parts) await part?.sweep(info);
  };
}
