/**
 * Builds one coordinator from its collaborators: migrations, projection,
 * occurrence routing, WebSocket hub, HTTP server, scheduler. Never reads
 * process.env, so tests run several coordinators in one process against
 * one database.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Config } from './config.js';
import type { Sql } from './db/pool.js';
import { migrate, migrationsComplete } from './db/migrate.js';
import { getOrCreateSetting } from './db/settings.js';
import type { Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createProjection, type Projection } from './projection/refresh.js';
import { createPass, type PassStats } from './schedule/pass.js';
import { createScheduler, type Scheduler } from './schedule/scheduler.js';
import { createClaimService } from './schedule/claims.js';
import { passSweep } from './schedule/lifecycle.js';
import { pendingNudgesFor } from './schedule/occurrences.js';
import { createPresenceStore } from './devices/presence.js';
import { createWsHub, type WsHub } from './nudge/ws-hub.js';
import { createNudgeBus } from './nudge/nudge-bus.js';
import { createRouter, frameOf, logOnlyFallback, type FallbackPlanner, type PushChannel } from './nudge/router.js';
import { createApp, type Mount } from './http/app.js';
import { mountOps } from './http/routes/ops.js';
import { mountOccurrences } from './http/routes/occurrences.js';
import { mountDev } from './http/routes/dev.js';
import { createUserAuth, type UserAuth } from './http/user-auth.js';
import { createRateLimiter } from './http/rate-limit.js';
import { createReleasers } from './lifetimes.js';
import { createLlmClient } from './planner/llm-client.js';
import { createPushSubscriptionStore } from './devices/push-subscriptions.js';
import { parseAllowlist } from './devices/endpoint-guard.js';
import { createPushSender } from './nudge/web-push.js';
import { createPushChannel } from './nudge/push-channel.js';
import { createVapidHeaders, generateVapidKeys, validateVapidKeys, type VapidKeyPair } from './nudge/vapid.js';
import { mountPush } from './http/routes/push.js';
import { findWebClientDir, mountStatic } from './http/routes/static.js';
import { createServerPlanner, type ServerPlanner } from './planner/server-planner.js';

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
  metrics: Metrics;
  projection: Projection;
  scheduler: Scheduler<PassStats>;
  hub: WsHub;
  auth: UserAuth;
  /** The server planner, unless a fallback was injected. */
  planner: ServerPlanner | undefined;
  stop(): Promise<void>;
}

const DEV_SECRET_KEY = 'dev_jwt_secret';
/** /ready answers 503 when the database has not answered within this long. */
const READY_TIMEOUT_MS = 2000;
const DEV_VAPID_KEY = 'dev_vapid_keys';

/** Configured keys; else, outside production, a pair generated once and kept in the database. */
async function vapidKeys(config: Config, sql: Sql, log: Logger): Promise<VapidKeyPair | undefined> {
  const { publicKey, privateKey } = config.vapid;
  if (publicKey && privateKey) {
    const v = validateVapidKeys(publicKey, privateKey);
    if (!v.ok) throw new Error(`VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY: ${v.reason}`);
    return { publicKey, privateKey };
  }
  if (config.env === 'production') {
    log.warn('VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY are not set: Web Push is off; devices are reached over WebSocket only');
    return undefined;
  }
  // Subscriptions are bound to the public key, so the dev pair must survive restarts.
  return getOrCreateSetting(sql, DEV_VAPID_KEY, generateVapidKeys);
}

export async function startCoordinator(deps: CoordinatorDeps): Promise<Coordinator> {
  const { config, sql } = deps;
  const log = deps.log.child({ instance: config.instanceId });
  const releasers = createReleasers(log);
  try {
    await migrate(sql, log, { devSyncChanges: config.devSyncTable });
    const metrics = createMetrics({ defaultMetrics: true });
    const projection = createProjection({
      sql,
      log: log.child({ component: 'projection' }),
      batchRows: config.projection.batchRows,
      cacheRecords: config.projection.cacheRecords,
      onApplied: (n) => metrics.rowsApplied.inc(n),
      onMalformed: (n) => metrics.rowsSkipped.inc(n),
    });
    await projection.columns();

    const devSecret = config.devDefaults
      ? Buffer.from(await getOrCreateSetting(sql, DEV_SECRET_KEY, () => randomBytes(32).toString('base64')), 'base64')
      : undefined;
    const auth = createUserAuth(
      devSecret
        ? { devSecret }
        : { jwksUrl: config.jwt.jwksUrl!, issuer: config.jwt.issuer, audience: config.jwt.audience, log: log.child({ component: 'auth' }) },
    );
    if (!devSecret && !config.jwt.jwksUrl) throw new Error('JWKS_URL: expected the JWKS URL of mana-auth outside the dev default');

    const limiter = createRateLimiter({ perMinute: config.rateLimitPerMinute, registry: metrics.registry });
    const allowlist = parseAllowlist(config.pushAllowlist);
    const subscriptions = createPushSubscriptionStore(sql);
    const vapid = deps.push ? undefined : await vapidKeys(config, sql, log);
    let push = deps.push;
    let drainPushes = async (): Promise<void> => undefined;
    if (vapid) {
      const sender = createPushSender({
        vapid: createVapidHeaders({ ...vapid, subject: config.vapid.subject }),
        allowlist,
        registry: metrics.registry,
        log,
        timeoutMs: config.pushTimeoutMs,
      });
      // Closing the sender ends its retries; then wait for the router's last push sends.
      releasers.add(async () => {
        await sender.close();
        await drainPushes();
      });
      push = createPushChannel({ store: subscriptions, sender, vapidPublicKey: vapid.publicKey, log: log.child({ component: 'push' }) });
    }

    let scheduler: Scheduler<PassStats> | undefined;
    const poke = () => void scheduler?.runOnce().catch(() => undefined);
    const claims = createClaimService({ sql, leaseMs: config.claims.leaseMs, onReleased: poke });
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
    });
    const bus = createNudgeBus({ sql, instanceId: config.instanceId, log: log.child({ component: 'nudge-bus' }), onNudge: (n) => hub.deliver(n.userId, n.frame) });
    const planner = deps.fallback
      ? undefined
      : createServerPlanner({
          sql,
          log: log.child({ component: 'planner' }),
          registry: metrics.registry,
          llm: config.llm.url
            ? createLlmClient({
                url: config.llm.url,
                serviceKey: config.serviceKey,
                model: config.llm.model,
                timeoutMs: config.llm.timeoutMs,
                concurrency: config.llm.concurrency,
                maxRetries: config.llm.maxRetries,
                registry: metrics.registry,
                log,
              })
            : null,
          instanceId: config.instanceId,
          leaseMs: config.claims.leaseMs,
          maxAttempts: config.llm.maxAttempts,
          concurrency: config.llm.concurrency,
          retryBackoffMs: config.llm.retryBackoffMs,
          defaultTimeZone: config.defaultTimeZone,
          target: { cols: await projection.columns(), writerRole: config.syncWriterRole },
        });
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
      presence,
      deliverLocal: hub.deliver,
      hasLocal: hub.hasLocal,
      publish: bus.publish,
      push,
      fallback,
    });
    drainPushes = router.drain;

    const runPass = createPass({ sql, projection, metrics, log: log.child({ component: 'pass' }), dispatch: router.dispatch, sweep: passSweep(router, planner), prepare: router.prepare, prepareWithinMs: prepareAheadMs(config.tick.intervalMs) });
    scheduler = createScheduler({ runPass, intervalMs: config.tick.intervalMs, log, ...createOutageReporter(log, metrics) });

    let migrated = false;
    const isReady = async () => {
      // A probe answers promptly: during an outage the query can wait on a connection in backoff.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      });
      try {
        await Promise.race([sql`SELECT 1`.execute(), late]);
        migrated ||= await Promise.race([migrationsComplete(sql), late]);
        return migrated ? { ready: true } : { ready: false, reason: 'migrations pending' };
      } catch (err: unknown) {
        return { ready: false, reason: `database unreachable: ${(err as Error).message}` };
      } finally {
        clearTimeout(timer);
      }
    };

    const s = scheduler;
    const mounts: Mount[] = [
      (a) => mountOps(a, { version: config.version, instanceId: config.instanceId, sql, metrics, scheduler: s, serviceKey: config.serviceKey, isReady }),
      (a) => mountOccurrences(a, { sql, auth, claims, serviceKey: config.serviceKey, limiter }),
      (a) => mountPush(a, { auth, store: subscriptions, allowlist, vapidPublicKey: vapid?.publicKey, limiter }),
      ...(devSecret ? [(a: Parameters<Mount>[0]) => mountDev(a, { sql, auth, devSecret, writerRole: config.syncWriterRole, poke })] : []),
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
    hub.attach(server as Server);
    releasers.add(() => hub.close());
    await bus.start();
    releasers.add(() => bus.stop());
    releasers.add(() => presence.clear().catch(() => undefined));

    const presenceTimer = setInterval(() => {
      presence
        .heartbeat()
        .then(() => presence.sweep())
        .catch((err: unknown) => log.debug({ err }, 'presence heartbeat failed'));
    }, Math.max(1000, Math.floor(config.presenceTtlMs / 3)));
    presenceTimer.unref();
    releasers.add(() => clearInterval(presenceTimer));
    // Runs after the scheduler stopped (last in, first out): no pass arms anything after it.
    releasers.add(() => router.stop());
    releasers.add(() => s.stop());

    const port = (server.address() as AddressInfo).port;
    const url = `http://127.0.0.1:${port}`;
    log.info({ port, tick: config.tick, devDefaults: config.devDefaults, serverPlanning: fallback.enabled, push: Boolean(push?.enabled) }, 'coordinator listening');

    if (config.tick.enabled) s.start();
    return { url, port, metrics, projection, scheduler: s, hub, auth, planner, stop: releasers.releaseAll };
  } catch (err: unknown) {
    await releasers.releaseAll();
    throw err;
  }
}

function listen(
  fetch: (req: Request) => Response | Promise<Response>,
  port: number,
  host: string,
  timeouts: Config['http'],
): Promise<ServerType> {
  // A client that opens a connection and trickles (or never finishes) its headers
  // or body is cut off; Node checks these only every connectionsCheckingInterval.
  // Upgraded sockets (/v1/ws) leave the HTTP server's tracking and are not affected.
  const serverOptions = {
    headersTimeout: timeouts.headersTimeoutMs,
    requestTimeout: timeouts.requestTimeoutMs,
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(timeouts.headersTimeoutMs / 4))),
  };
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port, hostname: host, serverOptions }, () => resolve(server));
    server.once('error', reject);
  });
}

function closeServer(server: ServerType): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive sockets would hold close() open; end them.
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}

/**
 * How far ahead a pass readies missions about to fall due: two intervals, so
 * every mission is seen by at least one pass before its due instant, capped
 * so that the presence it is routed on is at most a few seconds old.
 */
function prepareAheadMs(intervalMs: number): number {
  return Math.min(5000, Math.max(1000, 2 * intervalMs));
}

/** Logs a database outage once when it starts and once when it ends, not once per pass. */
function createOutageReporter(log: Logger, metrics: Metrics) {
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
