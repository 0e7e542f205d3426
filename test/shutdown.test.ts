/**
 * The real entry point as a child process: it becomes ready, and SIGTERM or
 * SIGINT stop it with exit code 0 within a few seconds, a pass in flight or
 * not. On the embedded Postgres: data is reused across restarts, and no
 * Postgres is left behind (not after a clean stop, not after a failed start,
 * not after a signal during startup), so the next start works.
 */
import { connect, createServer, type Server } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import postgres from 'postgres';
import { createTestDb, type TestDb } from './support/db.js';
import { freePort } from './support/free-port.js';
import { spawnChild, type SpawnedChild } from './support/child-coordinator.js';
import { reply, startLlmStub } from './support/llm-stub.js';
import { seedMissions } from './support/missions.js';
import { waitFor } from './support/wait.js';

const KEY = 'shutdown-test-service-key';

/** A child of the one harness, with the port it listens on once `waitReady` saw it. */
interface Child extends SpawnedChild {
  port: number;
}

function start(env: Record<string, string>): Child {
  // The product's own tick, not the harness's fast one: these runs measure a stop, not scheduling.
  return { ...spawnChild({ name: 'shutdown', env: { MANA_SERVICE_KEY: KEY, TICK_INTERVAL_MS: '1000', ...env } }), port: 0 };
}

const children: Child[] = [];
function launch(env: Record<string, string>): Child {
  const c = start(env);
  children.push(c);
  return c;
}

async function waitReady(c: Child, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void c.exited.then(() => (exited = true));
  let timer: NodeJS.Timeout | undefined;
  c.port = await Promise.race([
    c.listening,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not listening after ${timeoutMs} ms:\n${c.output()}`)), timeoutMs))),
  ]).finally(() => clearTimeout(timer));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`exited before ready:\n${c.output()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${c.port}/ready`);
      if (res.status === 200) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not ready after ${timeoutMs} ms:\n${c.output()}`);
}

async function stopWith(c: Child, signal: NodeJS.Signals, withinMs = 5000): Promise<void> {
  const sent = Date.now();
  c.proc.kill(signal);
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), withinMs + 5000).unref());
  const result = await Promise.race([c.exited, timeout]);
  expect(result, c.output()).not.toBe('timeout');
  expect(result, c.output()).toEqual({ code: 0, signal: null });
  expect(Date.now() - sent, c.output()).toBeLessThan(withinMs);
  expect(c.output()).toMatch(/"msg":"stopped"/);
}

/** True when something accepts TCP connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// A failed test must not leave its child (and its embedded Postgres) to the next test.
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.proc.exitCode !== null || c.proc.signalCode !== null) continue;
    c.proc.kill('SIGTERM');
    const done = await Promise.race([c.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000).unref())]);
    if (done === 'timeout') c.proc.kill('SIGKILL');
  }
});

describe('graceful shutdown on an external database', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb();
  });
  afterAll(async () => {
    await db?.drop();
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} → exit 0 within a few seconds`, async () => {
      const c = launch({ SYNC_DATABASE_URL: db.url });
      await waitReady(c);
      await stopWith(c, signal);
    }, 60_000);
  }

  it('SIGTERM while passes run back to back (TICK_INTERVAL_MS=50) still exits 0, leaving no session behind', async () => {
    const c = launch({ SYNC_DATABASE_URL: db.url, TICK_INTERVAL_MS: '50' });
    await waitReady(c);
    // A tick request in flight while the signal arrives.
    const tick = fetch(`http://127.0.0.1:${c.port}/internal/tick`, { method: 'POST', headers: { 'x-service-key': KEY } }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 20));
    await stopWith(c, 'SIGTERM');
    await tick;
    const [row] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'mana-ai:%'`;
    expect(row!.n).toBe(0);
  }, 60_000);

  it('SIGTERM with a server plan in flight and a pass stuck on a lock: the plan\'s lease is handed back before the process ends', async () => {
    const stub = await startLlmStub(reply.hang());
    const c = launch({ SYNC_DATABASE_URL: db.url, MANA_LLM_URL: stub.url, INSTANCE_ID: 'stopping' });
    const locker = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await waitReady(c);
      await seedMissions(db.sql, [{ userId: 'shut-1', missionId: 'm1', nextRunAt: new Date(Date.now() - 1000).toISOString() }]);
      await waitFor(() => stub.requests.length === 1, 15_000, 'the plan to reach the LLM');
      // An operator's lock on the projection's cursor: the next pass waits for it, and stopping the
      // scheduler waits for that pass, longer than the shutdown grace.
      const held = locker.begin(async (tx) => {
        await tx`LOCK TABLE mana_ai.projection_cursor IN ACCESS EXCLUSIVE MODE`;
        await tx`SELECT pg_sleep(20)`;
      }).catch(() => undefined);
      await waitFor(async () => {
        const [row] = await db.sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'mana-ai:stopping' AND wait_event_type = 'Lock' AND datname = current_database()`;
        return row!.n > 0;
      }, 10_000, 'a pass to wait on the lock');
      c.proc.kill('SIGTERM');
      await Promise.race([c.exited, new Promise((r) => setTimeout(r, 15_000).unref())]);
      const [occ] = await db.sql<{ status: string; handedBack: boolean }[]>`
        SELECT status, lease_expires_at <= now() AS "handedBack" FROM mana_ai.occurrences WHERE user_id = 'shut-1'`;
      // Another instance (or the restart) takes it at once, not when CLAIM_LEASE_MS (10 min) runs out.
      expect(occ, c.output()).toEqual({ status: 'planning', handedBack: true });
      await db.sql`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()`;
      await held;
    } finally {
      await locker.end({ timeout: 5 });
      await stub.close();
    }
  }, 90_000);
});

describe('the embedded Postgres (no database URL)', () => {
  let dir: string;
  let pgPort: number;
  const env = () => ({ EMBEDDED_PG_DIR: dir, EMBEDDED_PG_PORT: String(pgPort) });
  const pgUrl = () => `postgres://postgres:mana-dev@127.0.0.1:${pgPort}/mana_sync`;

  beforeAll(async () => {
    // The folder itself (not a child of it): as root, the cluster runs as another user that must reach it.
    dir = mkdtempSync(join(tmpdir(), 'mana-ai-shutdown-'));
    pgPort = await freePort();
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  async function expectNoPostgresLeft(): Promise<void> {
    expect(await listening(pgPort)).toBe(false);
    expect(existsSync(join(dir, 'postmaster.pid'))).toBe(false);
  }

  it('starts it, becomes ready, SIGTERM → exit 0; a second start reuses the data and is ready again', async () => {
    const first = launch(env());
    await waitReady(first, 120_000);
    expect(first.output()).toMatch(/initialising embedded Postgres/);
    const sql = postgres(pgUrl(), { max: 1, onnotice: () => {} });
    try {
      await sql`
        INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, created_at)
        VALUES ('ai', 'aiMissions', 'kept', 'u1', 'insert', ${sql.json({ title: 'survives restarts', state: 'paused' })}, 'device-1', now() + interval '1 minute')`;
    } finally {
      await sql.end({ timeout: 5 });
    }
    // The loop (every second) or this tick projects it, whichever comes first.
    const tick = await fetch(`http://127.0.0.1:${first.port}/internal/tick`, { method: 'POST', headers: { 'x-service-key': KEY } });
    expect(tick.status).toBe(200);
    await stopWith(first, 'SIGTERM', 8000);
    await expectNoPostgresLeft();

    const second = launch(env());
    await waitReady(second, 60_000);
    expect(second.output()).not.toMatch(/initialising embedded Postgres/);
    const again = postgres(pgUrl(), { max: 1, onnotice: () => {} });
    try {
      const [snap] = await again<{ title: string }[]>`SELECT fields->>'title' AS title FROM mana_ai.mission_snapshots WHERE mission_id = 'kept'`;
      expect(snap?.title).toBe('survives restarts');
    } finally {
      await again.end({ timeout: 5 });
    }
    await stopWith(second, 'SIGINT', 8000);
    await expectNoPostgresLeft();
  }, 180_000);

  it('a start that fails after the embedded Postgres is up (HTTP port taken) stops it again, so the next start works', async () => {
    const blocker: Server = createServer();
    const taken = await freePort();
    await new Promise<void>((r) => blocker.listen(taken, '0.0.0.0', () => r()));
    try {
      const failed = start({ ...env(), PORT: String(taken) });
      children.push(failed);
      const result = await Promise.race([failed.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000).unref())]);
      expect(result, failed.output()).toEqual({ code: 1, signal: null });
      expect(failed.output()).toMatch(/EADDRINUSE|address already in use/);
      await expectNoPostgresLeft();
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
    const next = launch(env());
    await waitReady(next, 60_000);
    await stopWith(next, 'SIGTERM', 8000);
    await expectNoPostgresLeft();
  }, 180_000);

  it('a signal during startup stops the embedded Postgres too, and the next start works', async () => {
    const c = launch(env());
    const deadline = Date.now() + 30_000;
    while (!/starting the embedded Postgres/.test(c.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    c.proc.kill('SIGTERM');
    const result = await Promise.race([c.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000).unref())]);
    expect(result, c.output()).toEqual({ code: 0, signal: null });
    await expectNoPostgresLeft();

    const next = launch(env());
    await waitReady(next, 60_000);
    await stopWith(next, 'SIGTERM', 8000);
    await expectNoPostgresLeft();
  }, 180_000);
});
