/**
 * What the benches that drive coordinators in child processes share: child
 * processes over IPC (spawnChild / serveChild), a bench coordinator, many
 * WebSocket clients, a fresh migrated database per scenario, percentiles,
 * and the entry helpers (`run()` when the file is run directly, an embedded
 * Postgres unless BENCH_DATABASE_URL names one).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import postgres from 'postgres';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config.js';
import { startCoordinator } from '../../src/coordinator.js';
import { startEmbeddedDb } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { signDevToken } from '../../src/auth/user-auth.js';
import { createLogger } from '../../src/log.js';
import type { FallbackPlanner } from '../../src/schedule/interfaces.js';
import { freePort } from '../support/free-port.js';

export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

// ---------------------------------------------------------------- utilities

export function percentiles(values: number[]): Percentiles {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  return { n: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: s[s.length - 1] ?? NaN };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function openFileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    return Number.parseInt(line?.split(/\s+/)[3] ?? '', 10) || Infinity;
  } catch {
    return Infinity;
  }
}


/** Runs `fn` over items with at most `limit` in flight. */
export async function pool<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}


// ---------------------------------------------------------------- child processes

export interface ChildHandle {
  proc: ChildProcess;
  port: number;
  request<T>(cmd: string, args?: Record<string, unknown>): Promise<T>;
  stop(): Promise<void>;
}

/** Forks `script` as a child of the given kind, driven over IPC; resolves once it answered 'start'. */
export async function spawnChild(kind: string, args: Record<string, unknown>, script: string, envName: string): Promise<ChildHandle> {
  const proc = fork(script, [], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    env: { ...process.env, [envName]: kind },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let seq = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  proc.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error));
  });
  proc.on('exit', (code) => {
    for (const p of pending.values()) p.reject(new Error(`${kind} child exited with ${code}`));
    pending.clear();
  });
  const request = <T>(cmd: string, a: Record<string, unknown> = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = ++seq;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      proc.send({ id, cmd, ...a });
    });
  const { port } = await request<{ port: number }>('start', args);
  return {
    proc,
    port,
    request,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      await request('stop').catch(() => undefined);
      await Promise.race([exited, sleep(5000)]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    },
  };
}

export function memory() {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

/**
 * Answers a parent's IPC requests (spawnChild's protocol): each command's
 * handler returns the reply; 'stop' runs `stop()`, replies and exits, and so
 * does a parent that went away.
 */
export function serveChild<M extends { id: number; cmd: string }>(handlers: Record<string, (m: M) => unknown>, stop: () => Promise<void>): void {
  const reply = (id: number, value: unknown) => process.send!({ id, ok: true, value });
  const fail = (id: number, err: unknown) => process.send!({ id, ok: false, error: (err as Error).message });
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));
  process.on('message', (m: M) => {
    void (async () => {
      try {
        if (m.cmd !== 'stop') return reply(m.id, (await handlers[m.cmd]?.(m)) ?? null);
        await stop();
        reply(m.id, null);
        process.exit(0);
      } catch (err: unknown) {
        fail(m.id, err);
      }
    })();
  });
}

/** A coordinator for a bench child (dev defaults, no claim deadline passing during a run), on its own pool. */
export async function startBenchCoordinator(
  databaseUrl: string,
  opts: { instanceId: string; fallback: FallbackPlanner; env?: Record<string, string> },
): Promise<{ port: number; stop: () => Promise<void> }> {
  const sql = createSql(databaseUrl, { max: 10, appName: `bench-${opts.instanceId}` });
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    INSTANCE_ID: opts.instanceId,
    // No claim deadline expires during the run, so no round pays for the previous one's fallback.
    WS_CLAIM_TIMEOUT_MS: '3600000',
    ...opts.env,
  });
  const log = createLogger({ level: 'warn', pretty: false, base: { bench: opts.instanceId } });
  const c = await startCoordinator({ config, sql, log, fallback: opts.fallback });
  return {
    port: c.port,
    async stop() {
      await c.stop();
      await sql.end({ timeout: 5 });
    },
  };
}


// ---------------------------------------------------------------- clients

export interface Clients {
  /** Arrival time (Date.now()) of each client's frames, by client index. */
  onFrame: (i: number, at: number, data: string) => void;
  sockets: WebSocket[];
  closeAll(): Promise<void>;
}

/** Opens n sockets; with `auth`, each sends it first and waits for auth-ok. */
export async function openClients(
  url: string,
  n: number,
  auth: ((i: number) => string) | null,
  onFrame: (i: number, at: number, data: string) => void,
): Promise<Clients> {
  const sockets: WebSocket[] = new Array(n);
  const clients: Clients = {
    onFrame,
    sockets,
    async closeAll() {
      await Promise.all(
        sockets.map(
          (ws) =>
            new Promise<void>((resolve) => {
              if (!ws || ws.readyState === ws.CLOSED) return resolve();
              ws.once('close', () => resolve());
              ws.terminate();
            }),
        ),
      );
    },
  };
  await pool(
    Array.from({ length: n }, (_, i) => i),
    200,
    (i) =>
      new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(url, { perMessageDeflate: false });
        sockets[i] = ws;
        let ready = false;
        ws.on('error', (err) => {
          if (!ready) reject(err);
        });
        ws.on('open', () => {
          if (auth) ws.send(auth(i));
          else {
            ready = true;
            resolve();
          }
        });
        ws.on('message', (raw) => {
          const at = Date.now();
          const data = raw.toString();
          if (!ready) {
            if (data.includes('"auth-ok"')) {
              ready = true;
              resolve();
            } else reject(new Error(`expected auth-ok, got ${data}`));
            return;
          }
          clients.onFrame(i, at, data);
        });
      }),
  );
  return clients;
}


export async function freshDatabase(adminUrl: string, name: string): Promise<{ url: string; sql: Sql; secret: () => Promise<Uint8Array> }> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  const sql = createSql(url, { max: 4, appName: 'nudge-bench-client' });
  await migrate(sql, pino({ level: 'silent' }), { devSyncChanges: true });
  return {
    url,
    sql,
    async secret() {
      const [row] = await sql<{ value: string }[]>`SELECT value FROM mana_ai.settings WHERE key = 'dev_jwt_secret'`;
      if (!row) throw new Error('the coordinator did not create a dev secret');
      return Buffer.from(row.value, 'base64');
    },
  };
}

export async function tokensFor(secret: Uint8Array, users: string[]): Promise<string[]> {
  return Promise.all(users.map((u) => signDevToken(secret, u)));
}

export async function untilAsync(done: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await done()) && Date.now() < end) await sleep(50);
}

/** Resolves when `done()` is true, or after timeoutMs (then the caller counts what is missing). */
export async function until(done: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!done() && Date.now() < end) await sleep(10);
}


export const envInt = (name: string): number | undefined => (process.env[name] ? Number.parseInt(process.env[name]!, 10) : undefined);

/** Runs a bench's `run()` when its file is the process's entry; prints a failure and exits 1. */
export function runIfEntry(moduleUrl: string, main: () => Promise<void>): void {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  main()
    .then(() => process.exit(0))
    .catch((err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
}

/** Runs `fn` against `url`, else against an embedded Postgres in a temporary folder (removed after). */
export async function withBenchPostgres<T>(url: string | undefined, prefix: string, fn: (adminUrl: string) => Promise<T>): Promise<T> {
  if (url) return fn(url);
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    const pg = await startEmbeddedDb({ dir, port: await freePort(), log: pino({ level: 'silent' }) });
    try {
      return await fn(pg.url('postgres'));
    } finally {
      await pg.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
