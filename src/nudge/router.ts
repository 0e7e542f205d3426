/**
 * Routing: decides where each new occurrence goes (WebSocket, Web Push, the
 * server planner, or a wait) and delivers the nudges. The decision itself is
 * pure (route-decision.ts); every ledger transition is the lifecycle's
 * (schedule/lifecycle.ts), which the router calls with its decisions.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { usersWithMissionsDueBy, type DueMission } from '../schedule/due.js';
import type { FallbackPlanner, SweepInfo } from '../schedule/interfaces.js';
import type { Occurrence } from '../schedule/occurrence.js';
import { createLifecycle, NO_DEVICE, type Lifecycle } from '../schedule/lifecycle.js';
import { reason } from '../schedule/reasons.js';
import type { PresenceStore } from '../devices/presence.js';
import type { MissionDue } from './protocol.js';
import type { Nudge } from './nudge-bus.js';
import { decideRoute, type Route, type RouteTimeouts } from './route-decision.js';
import type { Registry } from 'prom-client';

export type { FallbackPlanner } from '../schedule/interfaces.js';

/** Web Push for the router: counts and sends; supplied by the push layer. */
export interface PushChannel {
  readonly enabled: boolean;
  subscriptionCounts(userIds: string[]): Promise<Map<string, number>>;
  /**
   * Sends a user's nudges due together to every subscription of the user, as
   * one message naming all of them; 'none-left' when every subscription was gone.
   */
  nudge(userId: string, frames: MissionDue[], ttlSeconds: number): Promise<'delivered' | 'none-left' | 'failed'>;
}

export interface RouterDeps {
  sql: Sql;
  log: Logger;
  registry: Registry;
  instanceId: string;
  leaseMs: number;
  timeouts: RouteTimeouts;
  /**
   * A push waits until this long after the user's earliest due mission when
   * another of the user's missions falls due by then, so one push names all
   * of them (0: one push per pass).
   */
  pushBatchWindowMs?: number;
  presence: PresenceStore;
  /** Local delivery; returns how many sockets on this instance got it. */
  deliverLocal: (userId: string, frame: MissionDue) => number;
  /** Delivery to other instances (LISTEN/NOTIFY). */
  publish: (nudges: Nudge[]) => Promise<void>;
  hasLocal: (userId: string) => boolean;
  push?: PushChannel;
  fallback: FallbackPlanner;
  /** The ledger's transitions; default: one built from the deps above. */
  lifecycle?: Lifecycle;
}

/** The longest a pass waits for its push sends; slower ones finish in the background. */
export const PUSH_WAIT_MS = 1000;

export interface Router {
  dispatch(due: DueMission[]): Promise<{ deferred: number }>;
  /**
   * Creates ahead, already nudged, the occurrences of missions about to fall
   * due whose users have a live socket, and arms a timer that sends their
   * frames at the due instant. Missions not taken here go through dispatch
   * when due.
   */
  prepare(upcoming: DueMission[]): Promise<void>;
  /** Cancels the armed nudges and deletes their not-yet-due rows, so another instance takes them. */
  stop(): Promise<void>;
  /** Resolves when every push send started by a pass has finished (shutdown, after the sender is closed). */
  drain(): Promise<void>;
  /** The lifecycle's per-pass sweep, re-routing through this router. */
  sweep(info?: SweepInfo): Promise<void>;
}

/** The nudge frame of an occurrence; `attempt` is its offer count, so a device tells a re-offer from a repeat. */
export const frameOf = (o: Pick<Occurrence, 'missionId' | 'iterationId' | 'dueAt' | 'offers'>): MissionDue => ({
  type: 'mission-due',
  missionId: o.missionId,
  iterationId: o.iterationId,
  dueAt: o.dueAt,
  attempt: Math.max(1, o.offers),
});

export function createRouter(deps: RouterDeps): Router {
  const { log } = deps;
  const lifecycle = deps.lifecycle ?? createLifecycle(deps);

  /** One wake-up per user: every occurrence of the user routed in this batch goes in one push. */
  async function sendPush(userId: string, occs: Occurrence[], ttlSeconds: number): Promise<void> {
    try {
      const result = await deps.push!.nudge(userId, occs.map(frameOf), ttlSeconds);
      // Every subscription was gone: nobody can be woken, fall back now rather than at the deadline.
      if (result === 'none-left') await lifecycle.toFallback(occs, ['nudged'], reason('no-device', 'push subscriptions gone'));
    } catch (err: unknown) {
      log.warn({ err, iterationId: occs[0]!.iterationId, occurrences: occs.length }, 'push nudge failed; the deadline will hand it to the fallback');
    }
  }

  /** Runs one batched routing step; a failure leaves its occurrences 'created' for the stale sweep. */
  async function step(what: string, occs: Occurrence[], fn: () => Promise<void>): Promise<void> {
    if (occs.length === 0) return;
    try {
      await fn();
    } catch (err: unknown) {
      log.error({ err, occurrences: occs.length, first: occs[0]!.iterationId }, `routing to ${what} failed; the occurrences stay in the ledger and are routed again later`);
    }
  }

  /** Users (of the given ones) with a live socket on any instance, this one included. */
  async function liveSet(users: string[]): Promise<Set<string>> {
    const live = await deps.presence.liveUsers(users);
    for (const u of users) if (deps.hasLocal(u)) live.add(u);
    return live;
  }

  /** Sends the frames of occurrences nudged over the WebSocket: local sockets now, other instances by NOTIFY. */
  async function deliverWs(nudged: Occurrence[]): Promise<void> {
    if (nudged.length === 0) return;
    const frames: Nudge[] = [];
    for (const occ of nudged) {
      const frame = frameOf(occ);
      deps.deliverLocal(occ.userId, frame);
      frames.push({ userId: occ.userId, frame });
    }
    await publishElsewhere(frames);
  }

  /**
   * NOTIFYs the nudges whose users have a socket on another instance. Read
   * after the row says nudged, so a socket that joins elsewhere later finds
   * it in its pending list instead; unknown (query failed) → publish all.
   */
  async function publishElsewhere(frames: Nudge[]): Promise<void> {
    try {
      const elsewhere = await deps.presence
        .elsewhere([...new Set(frames.map((n) => n.userId))])
        .catch((err: unknown) => {
          log.warn({ err }, 'presence lookup failed; notifying every nudge');
          return null;
        });
      const remote = elsewhere ? frames.filter((n) => elsewhere.has(n.userId)) : frames;
      if (remote.length > 0) await deps.publish(remote);
    } catch (err: unknown) {
      log.warn({ err }, 'nudge publish failed');
    }
  }

  /** What routing needs to know about these users: a live socket anywhere, push subscriptions. */
  async function factsOf(users: string[]): Promise<(userId: string) => Route['channel']> {
    const live = await liveSet(users);
    const pushCounts = deps.push?.enabled && live.size < users.length ? await deps.push.subscriptionCounts(users.filter((u) => !live.has(u))) : new Map<string, number>();
    return (userId) =>
      decideRoute(
        {
          liveSocket: live.has(userId),
          pushSubscriptions: pushCounts.get(userId) ?? 0,
          pushEnabled: Boolean(deps.push?.enabled),
          serverPlanning: deps.fallback.enabled,
        },
        deps.timeouts,
      ).channel;
  }

  async function route(occs: Occurrence[], known?: (userId: string) => Route['channel']): Promise<void> {
    if (occs.length === 0) return;
    const channelOf = known ?? (await factsOf([...new Set(occs.map((o) => o.userId))]));
    // Decide each, then move every channel's occurrences with one statement: a
    // round trip per occurrence made 10,000 simultaneous nudges take seconds.
    const toWs: Occurrence[] = [];
    const toPush: Occurrence[] = [];
    const toServer: Occurrence[] = [];
    for (const occ of occs) {
      const channel = channelOf(occ.userId);
      (channel === 'ws' ? toWs : channel === 'push' ? toPush : toServer).push(occ);
    }
    await step('ws', toWs, async () => deliverWs(await lifecycle.nudge(toWs, 'ws', deps.timeouts.wsClaimMs)));
    const pushes: Promise<void>[] = [];
    await step('push', toPush, async () => {
      const byUser = new Map<string, Occurrence[]>();
      for (const occ of await lifecycle.nudge(toPush, 'push', deps.timeouts.pushClaimMs)) {
        const list = byUser.get(occ.userId);
        if (list) list.push(occ);
        else byUser.set(occ.userId, [occ]);
      }
      for (const [userId, occs] of byUser) pushes.push(sendPush(userId, occs, Math.ceil(deps.timeouts.pushClaimMs / 1000)));
    });
    await step('the fallback', toServer, () => lifecycle.toFallback(toServer, ['created'], NO_DEVICE));
    // A push service that hangs or keeps failing must not hold the scheduler (and with
    // it every other user's nudges and deadlines) for its retries: wait a little, then
    // let the sends finish on their own. The occurrence is 'nudged' with a deadline either way.
    const all = Promise.all(pushes);
    track(all);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, PUSH_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /**
   * Users whose push waits: one of their missions falls due within the push
   * window after their earliest due one, and that window is still open. Their
   * missions stay due and uncreated; the pass at the later one's instant
   * routes them together (the loop wakes then: it is the next due mission).
   * A failed lookup holds no one.
   */
  async function holdForPushWindow(due: DueMission[], routeOf: (d: DueMission) => string): Promise<Set<string>> {
    const windowMs = deps.pushBatchWindowMs ?? 0;
    if (windowMs <= 0) return new Set();
    const until = new Map<string, string>();
    const nowMs = Date.now();
    for (const d of due) {
      if (until.has(d.userId) || routeOf(d) !== 'push') continue;
      // Due sorted oldest first: the first of a user's is the earliest.
      const closesMs = Date.parse(d.nextRunAt) + windowMs;
      if (closesMs > nowMs) until.set(d.userId, new Date(closesMs).toISOString());
    }
    return usersWithMissionsDueBy(deps.sql, until).catch((err: unknown) => {
      log.warn({ err }, 'push window lookup failed; pushing now');
      return new Set<string>();
    });
  }

  /** Occurrences created ahead, waiting for their due instant, by iterationId; and their timers by dueAt. */
  const armed = new Map<string, Occurrence>();
  const timers = new Map<string, NodeJS.Timeout>();
  let stopped = false;

  function arm(occs: Occurrence[]): void {
    const byDue = new Map<string, Occurrence[]>();
    for (const occ of occs) {
      armed.set(occ.iterationId, occ);
      if (!timers.has(occ.dueAt)) byDue.set(occ.dueAt, []);
    }
    for (const dueAt of byDue.keys()) schedule(dueAt);
  }

  function schedule(dueAt: string): void {
    const timer = setTimeout(() => {
      // Timers run against libuv's cached loop time and can fire a millisecond early: never nudge before dueAt.
      if (Date.now() < Date.parse(dueAt)) return schedule(dueAt);
      timers.delete(dueAt);
      fire(dueAt).catch((err: unknown) => log.error({ err, dueAt }, 'sending nudges armed ahead failed; the stale sweep routes them again'));
    }, Math.max(0, Math.ceil(Date.parse(dueAt) - Date.now())));
    timer.unref();
    timers.set(dueAt, timer);
  }

  /** The due instant of occurrences readied ahead: the rows say nudged already, so only frames are left. */
  async function fire(dueAt: string): Promise<void> {
    const occs = [...armed.values()].filter((o) => o.dueAt === dueAt);
    for (const occ of occs) armed.delete(occ.iterationId);
    if (occs.length === 0 || stopped) return;
    lifecycle.countNudged('ws', occs.length);
    await deliverWs(occs);
  }

  const inFlight = new Set<Promise<unknown>>();
  function track(p: Promise<unknown>): void {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }

  return {
    async drain() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },
    async dispatch(due) {
      // Decide first, then create each occurrence already routed: those of users with a
      // live socket nudged (their frames go out as soon as their INSERT returns), those
      // of users with no device with the server planner. Only pushes are sent after.
      const channelOf = await factsOf([...new Set(due.map((d) => d.userId))]);
      const routeOf = (d: DueMission) => {
        const channel = channelOf(d.userId);
        return channel === 'ws' || channel === 'push' ? channel : 'fallback';
      };
      const held = await holdForPushWindow(due, routeOf);
      const now = held.size === 0 ? due : due.filter((d) => !held.has(d.userId));
      const { rest, failure } = await lifecycle.createDue(now, routeOf, deps.timeouts.wsClaimMs, deliverWs);
      await route(rest, channelOf);
      if (failure !== undefined) throw failure;
      return { deferred: due.length - now.length };
    },
    async prepare(upcoming) {
      if (upcoming.length === 0 || stopped) return;
      // Only users with a socket on this instance: a nudge decided ahead goes over the socket
      // or not at all (the deadline hands it to the fallback), and from the instance holding
      // the socket its frame needs no NOTIFY at the instant. Every other instance readies its
      // own users; the rest are routed when due. Created nudged, with the claim deadline
      // counted from dueAt: nothing is written at the instant.
      const mine = await lifecycle.createAhead(upcoming.filter((d) => deps.hasLocal(d.userId)), deps.timeouts.wsClaimMs);
      if (mine.length === 0) return;
      if (stopped) return lifecycle.releaseAhead(mine.map((o) => o.iterationId));
      log.debug({ created: mine.length }, 'occurrences created ahead of their due time');
      arm(mine);
    },
    async stop() {
      stopped = true;
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
      const ids = [...armed.keys()];
      armed.clear();
      await lifecycle.releaseAhead(ids);
    },
    async sweep(info) {
      await lifecycle.sweep(info, {
        reroute: (occs) => route(occs),
        // An occurrence created ahead whose mission moved on before it fell due: no nudge.
        settled: (ids) => {
          for (const id of ids) armed.delete(id);
        },
      });
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
