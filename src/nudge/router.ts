/**
 * Routing effects: turns due missions into occurrences and each new
 * occurrence into a nudge (WebSocket, Web Push), a server plan, or a wait;
 * hands expired deadlines and leases to the fallback. The decision itself is
 * pure (route-decision.ts); this module only performs it.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { DueMission } from '../schedule/due.js';
import {
  createOccurrences,
  markNudged,
  markWaiting,
  settleFromSnapshots,
  takeExpired,
  takeForServer,
  takeWaitingDue,
  serverHolder,
  type Occurrence,
} from '../schedule/occurrences.js';
import type { PresenceStore } from '../devices/presence.js';
import type { MissionDue } from './protocol.js';
import type { Nudge } from './nudge-bus.js';
import { decideRoute, fallbackRoute, waitBackoffMs, WAIT_REASON, type RouteTimeouts } from './route-decision.js';
import { Counter, type Registry } from 'prom-client';

/** The server's own planner; takes ownership of an occurrence in status 'planning' it holds. */
export interface FallbackPlanner {
  /** False when server planning is off (no LLM): occurrences then wait for a device. */
  readonly enabled: boolean;
  plan(occurrence: Occurrence): void;
}

/** Web Push for the router: counts and sends; supplied by the push layer. */
export interface PushChannel {
  readonly enabled: boolean;
  subscriptionCounts(userIds: string[]): Promise<Map<string, number>>;
  /** Sends the nudge to every subscription of the user; 'none-left' when all were gone. */
  nudge(userId: string, frame: MissionDue, ttlSeconds: number): Promise<'delivered' | 'none-left' | 'failed'>;
}

export interface RouterDeps {
  sql: Sql;
  log: Logger;
  registry: Registry;
  instanceId: string;
  leaseMs: number;
  timeouts: RouteTimeouts;
  presence: PresenceStore;
  /** Local delivery; returns how many sockets on this instance got it. */
  deliverLocal: (userId: string, frame: MissionDue) => number;
  /** Delivery to other instances (LISTEN/NOTIFY). */
  publish: (nudges: Nudge[]) => Promise<void>;
  hasLocal: (userId: string) => boolean;
  push?: PushChannel;
  fallback: FallbackPlanner;
}

export interface Router {
  dispatch(due: DueMission[]): Promise<void>;
  /** Settles, expires and retries occurrences; run once per pass. */
  sweep(): Promise<void>;
}

export const frameOf = (o: Pick<Occurrence, 'missionId' | 'iterationId' | 'dueAt'>): MissionDue => ({
  type: 'mission-due',
  missionId: o.missionId,
  iterationId: o.iterationId,
  dueAt: o.dueAt,
});

export function createRouter(deps: RouterDeps): Router {
  const { sql, log } = deps;
  const holder = serverHolder(deps.instanceId);
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

  async function toFallback(occ: Occurrence, from: Occurrence['status'][], reason: string): Promise<void> {
    const route = fallbackRoute({ serverPlanning: deps.fallback.enabled });
    if (route.channel === 'server') {
      const taken = await takeForServer(sql, occ.iterationId, from, holder, deps.leaseMs, reason);
      if (taken) {
        routed.inc({ channel: 'server' });
        deps.fallback.plan(taken);
      }
      return;
    }
    if (route.channel === 'wait') {
      routed.inc({ channel: 'wait' });
      await markWaiting(sql, occ.iterationId, { from, reason: route.reason, retryInMs: waitBackoffMs(occ.attempts) });
    }
  }

  async function sendPush(occ: Occurrence, ttlSeconds: number): Promise<void> {
    try {
      const result = await deps.push!.nudge(occ.userId, frameOf(occ), ttlSeconds);
      // Every subscription was gone: nobody can be woken, fall back now rather than at the deadline.
      if (result === 'none-left') await toFallback(occ, ['nudged'], 'push subscriptions gone');
    } catch (err: unknown) {
      log.warn({ err, iterationId: occ.iterationId }, 'push nudge failed; the deadline will hand it to the fallback');
    }
  }

  async function route(occs: Occurrence[]): Promise<void> {
    if (occs.length === 0) return;
    const users = [...new Set(occs.map((o) => o.userId))];
    const live = await deps.presence.liveUsers(users);
    const pushCounts = deps.push?.enabled && live.size < users.length ? await deps.push.subscriptionCounts(users.filter((u) => !live.has(u))) : new Map<string, number>();
    const remote: Nudge[] = [];
    const pushes: Promise<void>[] = [];
    for (const occ of occs) {
      const decision = decideRoute(
        {
          liveSocket: live.has(occ.userId) || deps.hasLocal(occ.userId),
          pushSubscriptions: pushCounts.get(occ.userId) ?? 0,
          pushEnabled: Boolean(deps.push?.enabled),
          serverPlanning: deps.fallback.enabled,
        },
        deps.timeouts,
      );
      try {
        if (decision.channel === 'ws') {
          const nudged = await markNudged(sql, occ.iterationId, 'ws', decision.deadlineMs);
          if (!nudged) continue;
          routed.inc({ channel: 'ws' });
          const frame = frameOf(nudged);
          deps.deliverLocal(occ.userId, frame);
          remote.push({ userId: occ.userId, frame });
        } else if (decision.channel === 'push') {
          const nudged = await markNudged(sql, occ.iterationId, 'push', decision.deadlineMs);
          if (!nudged) continue;
          routed.inc({ channel: 'push' });
          pushes.push(sendPush(nudged, Math.ceil(decision.deadlineMs / 1000)));
        } else {
          await toFallback(occ, ['created'], decision.channel === 'wait' ? decision.reason : 'no reachable device');
        }
      } catch (err: unknown) {
        log.error({ err, iterationId: occ.iterationId }, 'routing an occurrence failed; it stays in the ledger for the next pass');
      }
    }
    if (remote.length > 0) await deps.publish(remote).catch((err: unknown) => log.warn({ err }, 'nudge publish failed'));
    await Promise.all(pushes);
  }

  return {
    async dispatch(due) {
      const created = await createOccurrences(sql, due);
      if (created.length > 0) log.info({ created: created.length }, 'occurrences created');
      await route(created);
    },
    async sweep() {
      const settled = await settleFromSnapshots(sql);
      if (settled.length > 0) log.info({ settled: settled.length }, 'occurrences settled from the mission log');
      const taken = await takeExpired(sql, holder, deps.leaseMs, 500);
      for (const occ of taken) {
        expired.inc();
        log.info({ iterationId: occ.iterationId, reason: occ.lastError }, 'deadline or lease passed; handing to the fallback');
        if (deps.fallback.enabled) deps.fallback.plan(occ);
        else await markWaiting(sql, occ.iterationId, { from: ['planning'], holder, reason: WAIT_REASON, retryInMs: waitBackoffMs(occ.attempts) });
      }
      // Waiting occurrences whose retry time came go through routing again (a device may be back).
      await route(await takeWaitingDue(sql, 500));
    },
  };
}

/** Used until a real planner is wired: keeps the occurrence in 'planning' and says so. */
export function logOnlyFallback(log: Logger): FallbackPlanner {
  return {
    enabled: true,
    plan(occ) {
      log.info({ iterationId: occ.iterationId, missionId: occ.missionId }, 'would plan on the server (no planner wired)');
    },
  };
}
