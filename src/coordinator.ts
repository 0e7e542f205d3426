/**
 * Builds one coordinator from its collaborators: migrations, projection,
 * scheduler, HTTP server. Never reads process.env, so tests run several
 * coordinators in one process against one database.
 */
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import type { Sql } from './db/pool.js';
import { migrate, migrationsComplete } from './db/migrate.js';
import type { Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createProjection, type Projection } from './projection/refresh.js';
import { createPass, logOnlyDispatch, type Dispatch, type PassStats } from './schedule/pass.js';
import { createScheduler, type Scheduler } from './schedule/scheduler.js';
import { createApp } from './http/app.js';
import { mountOps } from './http/routes/ops.js';
import { createReleasers } from './lifetimes.js';

export interface CoordinatorDeps {
  config: Config;
  sql: Sql;
  log: Logger;
  /** Overrides the default dispatch (tests, or the routing layer). */
  dispatch?: Dispatch;
}

export interface Coordinator {
  url: string;
  port: number;
  metrics: Metrics;
  projection: Projection;
  scheduler: Scheduler<PassStats>;
  stop(): Promise<void>;
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

    const runPass = createPass({ sql, projection, metrics, log: log.child({ component: 'pass' }), dispatch: deps.dispatch ?? logOnlyDispatch(log) });
    const scheduler = createScheduler({
      runPass,
      intervalMs: config.tick.intervalMs,
      log,
      ...createOutageReporter(log, metrics),
    });
    releasers.add(() => scheduler.stop());

    let migrated = false;
    const isReady = async () => {
      try {
        await sql`SELECT 1`.execute();
        migrated ||= await migrationsComplete(sql);
        return migrated ? { ready: true } : { ready: false, reason: 'migrations pending' };
      } catch (err: unknown) {
        return { ready: false, reason: `database unreachable: ${(err as Error).message}` };
      }
    };

    const app = createApp({
      log,
      version: config.version,
      mounts: [(a) => mountOps(a, { version: config.version, instanceId: config.instanceId, sql, metrics, scheduler, serviceKey: config.serviceKey, isReady })],
    });

    const server = await listen(app.fetch, config.port, config.host);
    releasers.add(() => closeServer(server));
    const port = (server.address() as AddressInfo).port;
    const url = `http://127.0.0.1:${port}`;
    log.info({ port, tick: config.tick }, 'coordinator listening');

    if (config.tick.enabled) scheduler.start();
    return { url, port, metrics, projection, scheduler, stop: releasers.releaseAll };
  } catch (err: unknown) {
    await releasers.releaseAll();
    throw err;
  }
}

function listen(fetch: (req: Request) => Response | Promise<Response>, port: number, host: string): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port, hostname: host }, () => resolve(server));
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
