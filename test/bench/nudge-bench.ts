/**
 * Nudge latency and fan-out: `node --import tsx test/bench/nudge-bench.ts`
 * (env: NUDGE_BENCH_MISSIONS, NUDGE_BENCH_ALREADY_DUE, NUDGE_BENCH_CONNECTIONS,
 * NUDGE_BENCH_ROUNDS; BENCH_DATABASE_URL for an existing Postgres superuser
 * URL, else an embedded Postgres in a temporary folder).
 *
 * The coordinator runs in a child process (its memory is its own, measured
 * there after a forced GC); this process holds every client socket. Missions
 * reach it the way production's do: rows inserted into sync_changes, nothing
 * poked.
 *
 * (1) Due-to-nudge latency: N users with one socket each, one mission each
 *     with a future nextRunAt spread over a few seconds; latency = frame
 *     arrival − nextRunAt. Then changes that arrive already due (nextRunAt in
 *     the past), inserted one by one at random moments; latency = arrival −
 *     insert. Targets: p99 < 250 ms and p99 < 1.5 s.
 * (2) Fan-out: C sockets (one user each), C missions due at the same
 *     instant: time from that instant until the last frame arrives, and the
 *     coordinator's RSS growth per connection; side by side with a bare `ws`
 *     server (child process too) broadcasting one message to C clients.
 *     Targets: within 2× of bare ws on both. The missions are inserted a few
 *     seconds ahead, so the coordinator readies them before their instant (as
 *     it does for any nextRunAt it sees coming); the same burst arriving
 *     already due is measured once too (insert → last frame, tick included).
 */
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { loadConfig } from '../../src/config.js';
import type { Sql } from '../../src/db/pool.js';
import { envInt, freshDatabase, memory, openClients, openFileLimit, percentiles, runIfEntry, serveChild, sleep } from './bench-support.js';
import { spawnChild as spawnScript, startBenchCoordinator, tokensFor, until, untilAsync, withBenchPostgres } from './bench-support.js';
import type { ChildHandle, Percentiles } from './bench-support.js';

export type { Percentiles } from './bench-support.js';

export interface NudgeBenchResult {
  cpus: number;
  latency: Percentiles & { spreadMs: number; missed: number; targetMs: number; met: boolean };
  alreadyDue: Percentiles & { tickMs: number; missed: number; targetMs: number; met: boolean };
  fanout: {
    connections: number;
    rounds: number;
    coordinatorMs: number[];
    bareMs: number[];
    coordinatorMedianMs: number;
    bareMedianMs: number;
    /** CPU time of the server process per round, from just before the instant (broadcast) to the last frame. */
    coordinatorCpuMs: number[];
    bareCpuMs: number[];
    /** The same burst inserted already due (no readying ahead): insert → last frame, including the wait for the tick. */
    alreadyDueMs: number;
    coordinatorBytesPerConn: number;
    bareBytesPerConn: number;
    coordinatorHeapBytesPerConn: number;
    bareHeapBytesPerConn: number;
    timeRatio: number;
    memoryRatio: number;
    met: { time: boolean; memory: boolean };
  };
}

export interface NudgeBenchOptions {
  latencyMissions?: number;
  alreadyDue?: number;
  connections?: number;
  rounds?: number;
  databaseUrl?: string;
  progress?: (line: string) => void;
}

const SELF = fileURLToPath(import.meta.url);
/** How far ahead of their common due instant the fan-out missions are inserted. */
const FANOUT_LEAD_MS = 8000;
const CHILD_ENV = 'NUDGE_BENCH_CHILD';

const median = (xs: number[]) => percentiles(xs).p50;
const round1 = (x: number) => Math.round(x * 10) / 10;
const spawnChild = (kind: 'coordinator' | 'bare', args: Record<string, unknown>) => spawnScript(kind, args, SELF, CHILD_ENV);

/** The child side: a coordinator or a bare ws server, driven over IPC. */
async function childMain(kind: string): Promise<void> {
  type Message = { id: number; cmd: string; databaseUrl?: string; env?: Record<string, string>; message?: string };
  let stopChild: () => Promise<void> = async () => undefined;
  let broadcast: ((message: string) => { t0: number; sent: number; ms: number }) | undefined;

  async function startCoordinatorChild(m: Message): Promise<{ port: number }> {
    // Server planning on (as in production with an LLM) but doing nothing: only routing is measured.
    const c = await startBenchCoordinator(m.databaseUrl!, { instanceId: 'bench', fallback: { enabled: true, plan() {} }, env: m.env });
    stopChild = c.stop;
    return { port: c.port };
  }

  async function startBare(): Promise<{ port: number }> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    wss.on('connection', (ws) => ws.on('error', () => undefined));
    broadcast = (message) => {
      const t0 = Date.now();
      let sent = 0;
      for (const ws of wss.clients) {
        ws.send(message);
        sent++;
      }
      return { t0, sent, ms: Date.now() - t0 };
    };
    stopChild = async () => {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    };
    return { port: (wss.address() as { port: number }).port };
  }

  serveChild<Message>(
    {
      start: (m) => (kind === 'coordinator' ? startCoordinatorChild(m) : startBare()),
      mem: () => memory(),
      cpu: () => {
        const c = process.cpuUsage();
        return (c.user + c.system) / 1000;
      },
      broadcast: (m) => broadcast!(m.message!),
    },
    () => stopChild(),
  );
}

// ---------------------------------------------------------------- database

async function insertMissions(sql: Sql, rows: { userId: string; missionId: string; nextRunAt: string }[]): Promise<void> {
  const payload = rows.map((r) => ({
    u: r.userId,
    r: r.missionId,
    d: { id: r.missionId, title: `bench ${r.missionId}`, cadence: { kind: 'manual' }, state: 'active', iterations: [], nextRunAt: r.nextRunAt, createdAt: new Date().toISOString() },
  }));
  await sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, origin)
    SELECT 'ai', 'aiMissions', r, u, 'insert', d, 'bench', 'user'
    FROM jsonb_to_recordset(${sql.json(payload as never)}::jsonb) AS x(u text, r text, d jsonb)`;
}

// ---------------------------------------------------------------- scenarios

async function latencyScenario(adminUrl: string, opts: Required<Pick<NudgeBenchOptions, 'latencyMissions' | 'alreadyDue'>>, say: (s: string) => void) {
  const db = await freshDatabase(adminUrl, 'nudge_bench_latency');
  const coordinator = await spawnChild('coordinator', { databaseUrl: db.url, env: {} });
  try {
    const tickMs = loadConfig({ NODE_ENV: 'test' }).tick.intervalMs;
    const n = opts.latencyMissions;
    const users = Array.from({ length: n }, (_, i) => `lat-${i}`);
    const tokens = await tokensFor(await db.secret(), users);
    const arrivals = new Map<string, number>();
    const clients = await openClients(
      `ws://127.0.0.1:${coordinator.port}/v1/ws`,
      n,
      (i) => JSON.stringify({ type: 'auth', token: tokens[i], deviceId: 'bench' }),
      (_i, at, data) => {
        const f = JSON.parse(data) as { type: string; missionId?: string };
        if (f.type === 'mission-due' && !arrivals.has(f.missionId!)) arrivals.set(f.missionId!, at);
      },
    );
    say(`latency: ${n} sockets connected`);

    // Future nextRunAt, spread over a few seconds, inserted well ahead.
    const spreadMs = 4000;
    const start = Date.now() + 2000;
    const due = new Map<string, number>();
    const rows = users.map((u, i) => {
      const at = start + Math.floor((i * spreadMs) / n) + (i % 7);
      due.set(`m-${u}`, at);
      return { userId: u, missionId: `m-${u}`, nextRunAt: new Date(at).toISOString() };
    });
    await insertMissions(db.sql, rows);
    await until(() => arrivals.size >= n, spreadMs + 2000 + 10_000);
    const lat = [...due].filter(([m]) => arrivals.has(m)).map(([m, at]) => arrivals.get(m)! - at);
    const future = percentiles(lat);
    say(`latency (future nextRunAt): p50 ${future.p50} ms, p99 ${future.p99} ms, max ${future.max} ms, ${n - lat.length} missed`);

    // Already due on arrival: one row at a time at random moments (phase vs. the tick is random).
    const k = opts.alreadyDue;
    const inserted = new Map<string, number>();
    for (let i = 0; i < k; i++) {
      const u = users[i % n]!;
      const missionId = `late-${i}`;
      const t = Date.now();
      inserted.set(missionId, t);
      await insertMissions(db.sql, [{ userId: u, missionId, nextRunAt: new Date(t - 5000).toISOString() }]);
      await sleep(5 + Math.random() * 45);
    }
    await until(() => [...inserted.keys()].every((m) => arrivals.has(m)), 10_000);
    const late = [...inserted].filter(([m]) => arrivals.has(m)).map(([m, t]) => arrivals.get(m)! - t);
    const already = percentiles(late);
    say(`latency (already due, tick ${tickMs} ms): p50 ${already.p50} ms, p99 ${already.p99} ms, max ${already.max} ms, ${k - late.length} missed`);
    await clients.closeAll();
    return {
      latency: { ...future, spreadMs, missed: n - lat.length, targetMs: 250, met: future.p99 < 250 && lat.length === n },
      alreadyDue: { ...already, tickMs, missed: k - late.length, targetMs: 1500, met: already.p99 < 1500 && late.length === k },
    };
  } finally {
    await coordinator.stop();
    await db.sql.end({ timeout: 5 });
  }
}

async function fanoutScenario(adminUrl: string, connections: number, rounds: number, say: (s: string) => void) {
  const users = Array.from({ length: connections }, (_, i) => `fan-${i}`);
  const mem = async (h: ChildHandle, label: string) => {
    const m = await h.request<{ rss: number; heapUsed: number; external: number; arrayBuffers: number }>('mem');
    const mib = (x: number) => round1(x / 2 ** 20);
    say(`  ${label}: rss ${mib(m.rss)} MiB, heap ${mib(m.heapUsed)} MiB, external ${mib(m.external)} MiB, arrayBuffers ${mib(m.arrayBuffers)} MiB`);
    return m;
  };

  // The coordinator: C authenticated sockets, C missions due at one instant per round.
  const db = await freshDatabase(adminUrl, 'nudge_bench_fanout');
  const coordinator = await spawnChild('coordinator', { databaseUrl: db.url, env: {} });
  const coordinatorMs: number[] = [];
  const coordinatorCpuMs: number[] = [];
  let alreadyDueMs = NaN;
  let coordinatorBytes: number;
  let coordinatorHeap: number;
  try {
    const tokens = await tokensFor(await db.secret(), users);
    await sleep(500);
    const before = await mem(coordinator, 'coordinator before');
    let round = 0;
    let got = 0;
    let last = 0;
    const t0 = Date.now();
    const clients = await openClients(
      `ws://127.0.0.1:${coordinator.port}/v1/ws`,
      connections,
      (i) => JSON.stringify({ type: 'auth', token: tokens[i], deviceId: 'bench' }),
      (_i, at, data) => {
        if (data.includes(`"r${round}-`)) {
          got++;
          last = at;
        }
      },
    );
    say(`fan-out: ${connections} coordinator sockets authenticated in ${Date.now() - t0} ms`);
    await sleep(1000);
    const after = await mem(coordinator, 'coordinator connected');
    coordinatorBytes = (after.rss - before.rss) / connections;
    coordinatorHeap = (after.heapUsed - before.heapUsed) / connections;
    say(`fan-out: coordinator RSS +${round1((after.rss - before.rss) / 2 ** 20)} MiB → ${round1(coordinatorBytes / 1024)} KiB per connection (heap ${round1(coordinatorHeap / 1024)} KiB)`);

    for (round = 1; round <= rounds; round++) {
      got = 0;
      last = 0;
      // Inserted well ahead (projecting 10,000 new rows takes a few seconds on a loaded
      // 2-core box); all fall due at one instant.
      const dueAt = Date.now() + FANOUT_LEAD_MS;
      await insertMissions(
        db.sql,
        users.map((u) => ({ userId: u, missionId: `r${round}-${u}`, nextRunAt: new Date(dueAt).toISOString() })),
      );
      // CPU of the coordinator process from just before the instant until the last frame is in.
      await sleep(dueAt - 20 - Date.now());
      const cpu0 = await coordinator.request<number>('cpu');
      await until(() => got >= connections, 30_000);
      if (got < connections) throw new Error(`fan-out round ${round}: only ${got} of ${connections} nudges arrived`);
      const cpuMs = Math.round((await coordinator.request<number>('cpu')) - cpu0);
      coordinatorMs.push(last - dueAt);
      coordinatorCpuMs.push(cpuMs);
      say(`fan-out round ${round}: coordinator, due instant → last of ${connections} frames: ${last - dueAt} ms (coordinator CPU ${cpuMs} ms)`);
      // The devices would claim, plan and complete these; closing them keeps the open set (which
      // every pass's settle walks) at what production sees, instead of growing 10,000 a round.
      // Only once the coordinator has marked them all nudged: two multi-row UPDATEs over the
      // same rows in different orders can deadlock.
      const pattern = `r${round}-%`;
      await untilAsync(async () => {
        const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.occurrences WHERE status = 'nudged' AND mission_id LIKE ${pattern}`;
        return row!.n >= connections;
      }, 30_000);
      await db.sql`UPDATE mana_ai.occurrences SET status = 'completed', deadline_at = NULL, updated_at = now()
        WHERE status = 'nudged' AND mission_id LIKE ${pattern}`;
      await sleep(1500);
    }
    // The same burst arriving already due (no readying ahead): the due scan at the next
    // tick creates and routes all of them; measured from the insert.
    got = 0;
    last = 0;
    const insertedAt = Date.now();
    await insertMissions(
      db.sql,
      users.map((u) => ({ userId: u, missionId: `r${round}-${u}`, nextRunAt: new Date(insertedAt - 1000).toISOString() })),
    );
    await until(() => got >= connections, 30_000);
    if (got < connections) throw new Error(`fan-out (already due): only ${got} of ${connections} nudges arrived`);
    alreadyDueMs = last - insertedAt;
    say(`fan-out, already due on arrival: insert → last of ${connections} frames: ${alreadyDueMs} ms (includes the wait for the next tick)`);
    await clients.closeAll();
    await sleep(1000);
    await mem(coordinator, 'coordinator after the clients closed');
  } finally {
    await coordinator.stop();
    await db.sql.end({ timeout: 5 });
  }

  // Bare ws: the same number of clients, one message broadcast per round.
  const bare = await spawnChild('bare', {});
  const bareMs: number[] = [];
  const bareCpuMs: number[] = [];
  let bareBytes: number;
  let bareHeap: number;
  try {
    await sleep(500);
    const before = await mem(bare, 'bare before');
    let got = 0;
    let last = 0;
    const clients = await openClients(`ws://127.0.0.1:${bare.port}`, connections, null, (_i, at) => {
      got++;
      last = at;
    });
    await sleep(1000);
    const after = await mem(bare, 'bare connected');
    bareBytes = (after.rss - before.rss) / connections;
    bareHeap = (after.heapUsed - before.heapUsed) / connections;
    say(`fan-out: bare ws RSS +${round1((after.rss - before.rss) / 2 ** 20)} MiB → ${round1(bareBytes / 1024)} KiB per connection (heap ${round1(bareHeap / 1024)} KiB)`);
    const message = JSON.stringify({ type: 'mission-due', missionId: 'fan-0', iterationId: '6f1c9a52-2b7e-5b8e-9d55-3c8f0e4a7d21', dueAt: new Date().toISOString() });
    for (let r = 1; r <= rounds; r++) {
      got = 0;
      last = 0;
      const cpu0 = await bare.request<number>('cpu');
      const { t0, ms } = await bare.request<{ t0: number; ms: number }>('broadcast', { message });
      await until(() => got >= connections, 30_000);
      const cpuMs = Math.round((await bare.request<number>('cpu')) - cpu0);
      bareMs.push(last - t0);
      bareCpuMs.push(cpuMs);
      say(`fan-out round ${r}: bare ws, broadcast → last of ${connections} frames: ${last - t0} ms (send loop ${ms} ms, server CPU ${cpuMs} ms)`);
      await sleep(1000);
    }
    await clients.closeAll();
    await sleep(1000);
    await mem(bare, 'bare after the clients closed');
  } finally {
    await bare.stop();
  }

  const coordinatorMedianMs = median(coordinatorMs);
  const bareMedianMs = median(bareMs);
  const timeRatio = coordinatorMedianMs / bareMedianMs;
  const memoryRatio = coordinatorBytes / bareBytes;
  return {
    connections,
    rounds,
    coordinatorMs,
    bareMs,
    coordinatorMedianMs,
    bareMedianMs,
    coordinatorCpuMs,
    bareCpuMs,
    alreadyDueMs,
    coordinatorBytesPerConn: Math.round(coordinatorBytes),
    bareBytesPerConn: Math.round(bareBytes),
    coordinatorHeapBytesPerConn: Math.round(coordinatorHeap),
    bareHeapBytesPerConn: Math.round(bareHeap),
    timeRatio: Math.round(timeRatio * 100) / 100,
    memoryRatio: Math.round(memoryRatio * 100) / 100,
    met: { time: timeRatio <= 2, memory: memoryRatio <= 2 },
  };
}

// ---------------------------------------------------------------- entry

export async function runNudgeBench(opts: NudgeBenchOptions = {}): Promise<NudgeBenchResult> {
  const say = opts.progress ?? ((s: string) => process.stderr.write(`${s}\n`));
  const connections = opts.connections ?? 10_000;
  const need = connections + 1000;
  if (openFileLimit() < need) {
    throw new Error(`nudge bench: ${connections} sockets need about ${need} open files, the limit is ${openFileLimit()}; raise it (ulimit -n ${need * 2}) or lower NUDGE_BENCH_CONNECTIONS`);
  }
  return withBenchPostgres(opts.databaseUrl, 'nudge-bench-pg-', async (adminUrl) => {
    const lat = await latencyScenario(adminUrl, { latencyMissions: opts.latencyMissions ?? 500, alreadyDue: opts.alreadyDue ?? 200 }, say);
    const fanout = await fanoutScenario(adminUrl, connections, opts.rounds ?? 5, say);
    const { availableParallelism } = await import('node:os');
    return { cpus: availableParallelism(), ...lat, fanout };
  });
}

/** For `npm run bench` (test/bench/run.ts): the defaults, or the NUDGE_BENCH_* variables; prints the result as JSON. */
export async function run(): Promise<void> {
  const result = await runNudgeBench({
    latencyMissions: envInt('NUDGE_BENCH_MISSIONS'),
    alreadyDue: envInt('NUDGE_BENCH_ALREADY_DUE'),
    connections: envInt('NUDGE_BENCH_CONNECTIONS'),
    rounds: envInt('NUDGE_BENCH_ROUNDS'),
    databaseUrl: process.env['BENCH_DATABASE_URL'],
    progress: (line) => process.stderr.write(`[nudge-bench] ${line}\n`),
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

if (process.env[CHILD_ENV]) void childMain(process.env[CHILD_ENV]);
else runIfEntry(import.meta.url, run);
