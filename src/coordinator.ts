/**
 * Builds one coordinator from its collaborators: grants, migrations,
 * projection, occurrence routing, WebSocket hub, HTTP server, scheduler.
 * Wiring only; each policy lives in the module it names. Never reads
 * process.env, so tests run several coordinators in one process against one
 * database.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Hono } from 'hono';
import type { Config } from './config.js';
import type { Sql } from './db/pool.js';
import { migrate } from './db/migrate.js';
import { checkGrants, findingLine, type GrantFinding } from './db/grants.js';
import { createReadinessProbe } from './db/readiness.js';
import { isConnectionError } from './db/errors.js';
import type { Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createProjection, type Projection } from './projection/refresh.js';
import { checkFastPathIndex } from './projection/fast-path-index.js';
import { createPass, type PassStats } from './schedule/pass.js';
import { createScheduler, type Scheduler } from './schedule/scheduler.js';
import { createClaimService } from './schedule/claims.js';
import { passSweep } from './schedule/lifecycle.js';
import { pendingNudgesFor } from './schedule/occurrences.js';
import { createPresenceStore } from './devices/presence.js';
import { createWsHub, type WsHub } from './nudge/ws-hub.js';
import { createNudgeBus } from './nudge/nudge-bus.js';
import { createMissionChangeNotifier, type MissionChangeNotifier } from './nudge/mission-changes.js';
import { createRouter, frameOf, logOnlyFallback, type FallbackPlanner, type PushChannel } from './nudge/router.js';
import { createApp, type Mount } from './http/app.js';
import { mountOps } from './http/routes/ops.js';
import { metricsHandler } from './http/routes/metrics.js';
import { mountOccurrences } from './http/routes/occurrences.js';
import { mountDev } from './http/routes/dev.js';
import type { UserAuth } from './auth/user-auth.js';
import { authFor } from './auth/auth-for.js';
import { createRateLimiter } from './http/rate-limit.js';
import { throttleFailedServiceKeys } from './http/service-auth.js';
import { createReleasers } from './lifetimes.js';
import { createLlmClient } from './planner/llm-client.js';
import { createPushSubscriptionStore } from './devices/push-subscriptions.js';
import { createTimeZoneStore } from './devices/time-zones.js';
import { parseAllowlist } from './devices/endpoint-guard.js';
import { createPushSender } from './nudge/web-push.js';
import { createPushChannel } from './nudge/push-channel.js';
import { createVapidHeaders } from './nudge/vapid.js';
import { mountPush } from './http/routes/push.js';
import { findWebClientDir, mountStatic } from './http/routes/static.js';
import { createServerPlanner, type ServerPlanner } from './planner/server-planner.js';
import { createProjectedAgentSource } from './agents/agent-source.js';
import { detectSpaceColumn } from './planner/writeback.js';
import { closeServer, listen } from './start/listen.js';
import { vapidKeys } from './start/vapid-keys.js';
import { startPresenceTimer } from './start/presence-timer.js';
import { createOutageReporter, createPassRequests, prepareAheadMs } from './start/scheduling.js';
import { StartError } from './start-error.js';

export interface CoordinatorDeps {
  config: Config;
  sql: Sql;
  log: Logger;
  /** The server's own planner; defaults to one that only logs. */
  fallback?: FallbackPlanner;
  /** Web Push for the router; absent → the push channel is skipped. */
  push?: PushChannel;
  /** Extra route groups (push subscriptions, static files). */
  mounts?: Mount[];
}

export interface Coordinator {
  url: string;
  port: number;
  /** The separate /metrics listener's port (METRICS_PORT), if any. */
  metricsPort: number | undefined;
  metrics: Metrics;
  projection: Projection;
  scheduler: Scheduler<PassStats>;
  hub: WsHub;
  auth: UserAuth;
  /** The server planner, unless a fallback was injected. */
  planner: ServerPlanner | undefined;
  /** Grants missing for this login that the coordinator runs without (also on /ready). */
  degraded: GrantFinding[];
  stop(): Promise<void>;
}

type Releasers = ReturnType<typeof createReleasers>;

/** Checks the login's grants; a fatal finding refuses the start in one line, the rest are logged. */
async function grantsOrRefuse(config: Config, sql: Sql, log: Logger): Promise<GrantFinding[]> {
  const findings = await checkGrants(sql, {
    syncSchema: config.syncSchema,
    writerRole: config.syncWriterRole,
    serverPlanning: Boolean(config.llm.url),
    syncTableCreatedLater: config.devSyncTable,
  }).catch((err: unknown) => {
    // The first query of a start: a database that is not there is an operator's fix, not a crash.
    if (!isConnectionError(err) && (err as { code?: string }).code !== '28P01') throw err;
    throw new StartError(`SYNC_DATABASE_URL: cannot connect (${(err as { code?: string }).code}: ${(err as Error).message})`, { cause: err });
  });
  const fatal = findings.filter((f) => f.fatal);
  if (fatal.length > 0) throw new StartError(`missing grant: ${findingLine(fatal[0]!)}`);
  for (const f of findings) log.warn({ grant: f.name, fix: f.fix }, `missing grant (running degraded): ${findingLine(f)}`);
  return findings;
}

/** Web Push when keys exist (or one is injected); its sender's retries end before the router's last sends drain. */
async function buildPush(deps: CoordinatorDeps, subscriptions: ReturnType<typeof createPushSubscriptionStore>, metrics: Metrics, log: Logger) {
  const { config, sql } = deps;
  const allowlist = parseAllowlist(config.pushAllowlist);
  const vapid = deps.push ? undefined : await vapidKeys(config, sql, log);
  if (!vapid) return { push: deps.push, allowlist, vapid, close: async () => undefined };
  const sender = createPushSender({
    vapid: createVapidHeaders({ ...vapid, subject: config.vapid.subject }),
    allowlist,
    registry: metrics.registry,
    log,
    timeoutMs: config.pushTimeoutMs,
  });
  const push = createPushChannel({ store: subscriptions, sender, vapidPublicKey: vapid.publicKey, log: log.child({ component: 'push' }) });
  return { push, allowlist, vapid, close: () => sender.close() };
}

function buildPlanner(
  deps: CoordinatorDeps,
  metrics: Metrics,
  log: Logger,
  cols: Awaited<ReturnType<Projection['columns']>>,
  spaceColumn: boolean,
  changes: MissionChangeNotifier,
  requestPass: () => void,
) {
  const { config, sql } = deps;
  if (deps.fallback) return undefined;
  const llm = config.llm.url
    ? createLlmClient({
        url: config.llm.url,
        serviceKey: config.llm.apiKey,
        model: config.llm.model,
        timeoutMs: config.llm.timeoutMs,
        concurrency: config.llm.concurrency,
        maxRetries: config.llm.maxRetries,
        maxResponseBytes: config.limits.llmResponseBytes,
        registry: metrics.registry,
        log,
      })
    : null;
  return createServerPlanner({
    sql,
    log: log.child({ component: 'planner' }),
    registry: metrics.registry,
    llm,
    instanceId: config.instanceId,
    leaseMs: config.claims.leaseMs,
    maxAttempts: config.llm.maxAttempts,
    concurrency: config.llm.concurrency,
    retryBackoffMs: config.llm.retryBackoffMs,
    maxPlansPerUserPerDay: config.limits.plansPerUserPerDay,
    defaultTimeZone: config.defaultTimeZone,
    target: { cols, spaceColumn, writerRole: config.syncWriterRole },
    onWritten: changes.notify,
    // Agents as the projection holds them: the records the due scan and settling judged by.
    agents: createProjectedAgentSource({ sql }),
    // Occurrences woken for a freed agent slot are routed by the next pass: run it now.
    onAgentSlotFreed: requestPass,
  });
}

/** /metrics on a listener of its own (METRICS_PORT), so the main port need not expose it. */
async function listenForMetrics(config: Config, metrics: Metrics, releasers: Releasers): Promise<number | undefined> {
  if (config.metrics.port === undefined) return undefined;
  const app = new Hono();
  app.get('/metrics', metricsHandler({ registry: metrics.registry, token: config.metrics.token }));
  const server = await listen(app.fetch, config.metrics.port, config.host, config.http);
  releasers.add(() => closeServer(server));
  return (server.address() as AddressInfo).port;
}

/** The projection, its sync_changes columns, and the fast-path index check (built when SYNC_CREATE_INDEX allows). */
async function startProjection(deps: CoordinatorDeps, metrics: Metrics, log: Logger, releasers: Releasers) {
  const { config, sql } = deps;
  const projectionLog = log.child({ component: 'projection' });
  const projection = createProjection({
    sql,
    log: projectionLog,
    batchRows: config.projection.batchRows,
    cacheRecords: config.projection.cacheRecords,
    syncSchema: config.syncSchema,
    onApplied: (n) => metrics.rowsApplied.inc(n),
    onMalformed: (n) => metrics.rowsSkipped.inc(n),
  });
  const cols = await projection.columns();
  const fastPath = await checkFastPathIndex({ sql, schema: config.syncSchema, log: projectionLog, registry: metrics.registry, create: config.syncCreateIndex, quiet: config.devSyncTable });
  releasers.add(() => fastPath.stop());
  return { projection, cols };
}

export async function startCoordinator(deps: CoordinatorDeps): Promise<Coordinator> {
  const { config, sql } = deps;
  const log = deps.log.child({ instance: config.instanceId });
  const releasers = createReleasers(log);
  try {
    const degraded = await grantsOrRefuse(config, sql, log);
    await migrate(sql, log, { devSyncChanges: config.devSyncTable, syncSchema: config.syncSchema });
    const metrics = createMetrics({ defaultMetrics: true });
    const { projection, cols } = await startProjection(deps, metrics, log, releasers);
    const { auth, devSecret } = await authFor(config, sql, log);
    const limiter = createRateLimiter({ perMinute: config.rateLimitPerMinute, registry: metrics.registry });
    const subscriptions = createPushSubscriptionStore(sql, { maxPerUser: config.limits.pushSubscriptionsPerUser });
    const timeZones = createTimeZoneStore({ sql, log: log.child({ component: 'time-zones' }), registry: metrics.registry });
    const { push, allowlist, vapid, close: closePush } = await buildPush(deps, subscriptions, metrics, log);

    const passRequests = createPassRequests();
    const claims = createClaimService({ sql, leaseMs: config.claims.leaseMs, onReleased: passRequests.request });
    const presence = createPresenceStore({ sql, instanceId: config.instanceId, ttlMs: config.presenceTtlMs });
    const hub = createWsHub({
      auth,
      claims,
      presence,
      pendingFor: async (userId) => (await pendingNudgesFor(sql, userId)).map(frameOf),
      log,
      registry: metrics.registry,
      authTimeoutMs: config.wsAuthTimeoutMs,
      onAuthRefused: (code) => metrics.authRefused.inc({ transport: 'ws', code }),
      claimLimit: (userId) => limiter.take('claims', userId),
      maxSocketsPerUser: config.limits.wsSocketsPerUser,
      maxSockets: config.limits.wsSockets,
      onCapRefused: (cap) => metrics.capRefused.inc({ cap }),
      onTimeZone: (r) => void timeZones.report(r).catch((err: unknown) => log.warn({ err, userId: r.userId }, 'reported time zone not stored')),
    });
    const bus = createNudgeBus({
      sql,
      instanceId: config.instanceId,
      log: log.child({ component: 'nudge-bus' }),
      onNudge: (n) => hub.deliver(n.userId, n.frame),
      onMissionChanged: (c) => hub.deliver(c.userId, c.frame),
    });
    const changes = createMissionChangeNotifier({ deliverLocal: hub.deliver, elsewhere: presence.elsewhere, publish: bus.publishChanges, log: log.child({ component: 'mission-changes' }) });
    const planner = buildPlanner(deps, metrics, log, cols, await detectSpaceColumn(sql, config.syncSchema), changes, passRequests.request);
    // Released after the planner stopped (last in, first out): its last writes' news still goes out.
    releasers.add(() => changes.drain());
    if (planner) releasers.add(() => planner.stop());
    if (planner && !planner.enabled) log.warn('MANA_LLM_URL is not set: server fallback planning is off; occurrences wait for a device');
    const fallback = deps.fallback ?? planner ?? logOnlyFallback(log.child({ component: 'fallback' }));
    const router = createRouter({
      sql,
      log: log.child({ component: 'router' }),
      registry: metrics.registry,
      instanceId: config.instanceId,
      leaseMs: config.claims.leaseMs,
      timeouts: { wsClaimMs: config.claims.wsTimeoutMs, pushClaimMs: config.claims.pushTimeoutMs },
      pushBatchWindowMs: config.pushBatchWindowMs,
      presence,
      deliverLocal: hub.deliver,
      hasLocal: hub.hasLocal,
      publish: bus.publish,
      push,
      fallback,
    });
    // Closing the sender ends its retries; then wait for the router's last push sends.
    releasers.add(async () => {
      await closePush();
      await router.drain();
    });

    const runPass = createPass({ sql, projection, metrics, log: log.child({ component: 'pass' }), dispatch: router.dispatch, sweep: passSweep(router, planner), prepare: router.prepare, prepareWithinMs: prepareAheadMs(config.tick.intervalMs) });
    const scheduler = createScheduler({ runPass, intervalMs: config.tick.intervalMs, log, ...createOutageReporter(log, metrics) });
    passRequests.serveWith(() => scheduler.runOnce());

    const mounts: Mount[] = [
      // Before every route that checks a credential, so it sees their refusals.
      (a) => {
        const throttle = throttleFailedServiceKeys(limiter, { serviceKey: config.serviceKey, metricsToken: config.metrics.token, trustProxy: config.trustProxy });
        for (const path of ['/internal/*', '/health', '/ready', '/metrics']) a.use(path, throttle);
      },
      (a) => mountOps(a, { version: config.version, instanceId: config.instanceId, sql, scheduler, serviceKey: config.serviceKey, isReady: createReadinessProbe(sql, degraded) }),
      ...(config.metrics.port === undefined ? [(a: Parameters<Mount>[0]) => void a.get('/metrics', metricsHandler({ registry: metrics.registry, token: config.metrics.token }))] : []),
      (a) => mountOccurrences(a, { sql, auth, claims, serviceKey: config.serviceKey, limiter }),
      (a) => mountPush(a, { auth, store: subscriptions, allowlist, vapidPublicKey: vapid?.publicKey, limiter, onCapRefused: (cap) => metrics.capRefused.inc({ cap }), timeZones, log }),
      ...(devSecret
        ? [(a: Parameters<Mount>[0]) => mountDev(a, { sql, auth, devSecret, writerRole: config.syncWriterRole, syncSchema: config.syncSchema, poke: passRequests.request })]
        : []),
      ...(deps.mounts ?? []),
    ];
    const webClientDir = findWebClientDir();
    if (webClientDir) mounts.push((a) => mountStatic(a, { webClientDir, demo: config.devDefaults }));
    else log.warn('web-client/dist not found (run npm install or npm run build): /web-client and /demo are not served');
    const app = createApp({
      log,
      version: config.version,
      mounts,
      corsOrigins: config.corsOrigins,
      onAuthRefused: (code) => metrics.authRefused.inc({ transport: 'http', code }),
    });

    const server = await listen(app.fetch, config.port, config.host, config.http);
    releasers.add(() => closeServer(server));
    const metricsPort = await listenForMetrics(config, metrics, releasers);
    hub.attach(server as Server);
    releasers.add(() => hub.close());
    await bus.start();
    releasers.add(() => bus.stop());
    releasers.add(() => presence.clear().catch(() => undefined));
    releasers.add(startPresenceTimer(presence, config.presenceTtlMs, log));
    // Runs after the scheduler stopped (last in, first out): no pass arms anything after it.
    releasers.add(() => router.stop());
    // First of all, beside the scheduler: a pass in flight can wait on the database for longer
    // than the shutdown grace, and the planner's leases must be handed back before the process
    // is ended (an occurrence handed over meanwhile keeps only its short hand-over lease).
    releasers.add(async () => {
      await Promise.all([planner?.stop(), scheduler.stop()]);
      // No pass runs now: wait until what the last one handed over after the planner stopped has gone back.
      await planner?.handedBack();
    });

    const port = (server.address() as AddressInfo).port;
    const url = `http://127.0.0.1:${port}`;
    log.info({ port, metricsPort, mode: config.mode, tick: config.tick, devDefaults: config.devDefaults, serverPlanning: fallback.enabled, push: Boolean(push?.enabled) }, 'coordinator listening');

    if (config.tick.enabled) scheduler.start();
    return { url, port, metricsPort, metrics, projection, scheduler, hub, auth, planner, degraded, stop: releasers.releaseAll };
  } catch (err: unknown) {
    await releasers.releaseAll();
    throw err;
  }
}
