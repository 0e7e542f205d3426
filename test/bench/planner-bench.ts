/**
 * Fallback planning throughput:
 *   `node --import tsx test/bench/planner-bench.ts [missions] [concurrencies]`
 *   (defaults: 1000 missions, concurrencies "4,16")
 *
 * N missions fall due at once for N users with no device (no socket, no push
 * subscription), so every occurrence goes to the server planner. A stub
 * mana-llm (test/support/llm-stub.ts, in this process) answers each call
 * with a valid plan after 200 ms. The coordinator runs in a CHILD process
 * (`--child`), so its CPU time (process.cpuUsage deltas) excludes the stub,
 * this harness and Postgres. Measured per PLANNER_CONCURRENCY:
 *
 *   - wall time from the missions' commit until every occurrence is 'planned'
 *     (the status flips in the same transaction as the sync_changes insert,
 *     so "planned" means "written back");
 *   - the LLM floor N × 200 ms / concurrency, and the v0.1 one-by-one design
 *     N × 200 ms (computed, not run);
 *   - the coordinator's CPU time per planned mission (target < 5 ms).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { startEmbeddedDb, ensureDatabase } from '../../src/db/embedded.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';
import { RUNNER_CLIENT_ID } from '../../src/planner/writeback.js';
import { reply, startLlmStub } from '../support/llm-stub.js';
import { freePort } from '../support/free-port.js';

export interface PlannerBenchRun {
  concurrency: number;
  /** Missions' commit → every occurrence planned and written back. */
  wallMs: number;
  /** Missions' commit → every occurrence created and routed to the server. */
  routedMs: number;
  /** N × llmDelay / concurrency: what the LLM alone allows. */
  floorMs: number;
  llmCalls: number;
  /** Most LLM requests open at once, seen by the stub. */
  llmMaxInFlight: number;
  runnerRows: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  cpuPerMissionMs: number;
  /** The coordinator's CPU per second while idle (ticks, heartbeats) before the burst: part of every figure above. */
  idleCpuMsPerSecond: number;
  /** cpuPerMissionMs without the idle baseline over the run's wall time: what planning itself costs. */
  cpuPerMissionNetMs: number;
}

export interface PlannerBenchResult {
  missions: number;
  llmDelayMs: number;
  /** The v0.1 design plans one by one: N × llmDelay. */
  oneByOneMs: number;
  cpus: number;
  runs: PlannerBenchRun[];
  targetMet: { cpuUnder5msPerMission: boolean };
}

export interface PlannerBenchOptions {
  missions?: number;
  concurrencies?: number[];
  llmDelayMs?: number;
  log?: (line: string) => void;
}

const SELF = fileURLToPath(import.meta.url);
const CPU_TARGET_MS = 5;
const IDLE_MS = 5000;

type ChildMessage =
  | { type: 'ready' }
  | { type: 'armed' }
  | { type: 'report'; userUs: number; systemUs: number }
  | { type: 'error'; message: string };


function nextMessage<T extends ChildMessage['type']>(child: ChildProcess, type: T, timeoutMs = 120_000): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`coordinator child: no ${type} within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m: ChildMessage) => {
      if (m.type === 'error') done(new Error(`coordinator child: ${m.message}`));
      else if (m.type === type) done(null, m as Extract<ChildMessage, { type: T }>);
    };
    const onExit = (code: number | null) => done(new Error(`coordinator child exited (${code}) while waiting for ${type}`));
    function done(err: Error | null, m?: Extract<ChildMessage, { type: T }>) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m!);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

async function insertDueMissions(sql: Sql, n: number): Promise<void> {
  const due = new Date(Date.now() - 1000).toISOString();
  const rows = Array.from({ length: n }, (_, i) => ({
    u: `bench-user-${i}`,
    r: `mission-${i}`,
    d: {
      id: `mission-${i}`,
      title: `Bench mission ${i}`,
      objective: 'Keep the inbox under control',
      conceptMarkdown: 'One small step per day.',
      inputs: [],
      cadence: { kind: 'daily', atHour: 9, atMinute: 0 },
      state: 'active',
      iterations: [],
      nextRunAt: due,
      createdAt: new Date().toISOString(),
    },
  }));
  await sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, origin)
    SELECT 'ai', 'aiMissions', r, u, 'insert', d, 'bench-device', 'user'
    FROM jsonb_to_recordset(${sql.json(rows)}::jsonb) AS x(u text, r text, d jsonb)`;
}

async function progress(sql: Sql): Promise<{ created: number; planned: number }> {
  const [row] = await sql<{ created: number; planned: number }[]>`
    SELECT count(*)::int AS created, (count(*) FILTER (WHERE status = 'planned'))::int AS planned FROM mana_ai.occurrences`;
  return row!;
}

async function runOnce(adminUrl: string, llmUrl: string, concurrency: number, missions: number, llmDelayMs: number, stubStats: () => { calls: number; maxInFlight: number }): Promise<PlannerBenchRun> {
  const dbName = `planner_bench_c${concurrency}_${Date.now().toString(36)}`;
  await ensureDatabase(adminUrl, dbName);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const sql = createSql(url.toString(), { max: 2 });
  await migrate(sql, pino({ level: 'silent' }), { devSyncChanges: true });

  const child = fork(SELF, ['--child'], {
    // BENCH_CPU_PROF=<dir>: a V8 CPU profile of the coordinator, for finding hot spots.
    execArgv: ['--import', 'tsx', ...(process.env['BENCH_CPU_PROF'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['BENCH_CPU_PROF']}`] : [])],
    env: {
      ...process.env,
      NODE_ENV: 'test',
      DEV_MODE: '1',
      SYNC_DATABASE_URL: url.toString(),
      MANA_LLM_URL: llmUrl,
      PLANNER_CONCURRENCY: String(concurrency),
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: process.env['BENCH_LOG'] ?? 'warn',
      INSTANCE_ID: `bench-c${concurrency}`,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    await nextMessage(child, 'ready');
    // Idle baseline: what the coordinator spends with nothing due.
    child.send({ type: 'arm' });
    await nextMessage(child, 'armed');
    const idleStart = performance.now();
    await new Promise((r) => setTimeout(r, IDLE_MS));
    child.send({ type: 'report' });
    const idle = await nextMessage(child, 'report');
    const idleCpuMsPerSecond = ((idle.userUs + idle.systemUs) / 1000) / ((performance.now() - idleStart) / 1000);

    child.send({ type: 'arm' });
    await nextMessage(child, 'armed');
    const callsBefore = stubStats().calls;

    await insertDueMissions(sql, missions);
    const t0 = performance.now();
    child.send({ type: 'poke' });
    let routedMs = Number.NaN;
    for (;;) {
      const p = await progress(sql);
      if (Number.isNaN(routedMs) && p.created === missions) routedMs = performance.now() - t0;
      if (p.planned === missions) break;
      if (performance.now() - t0 > 600_000) throw new Error(`not done after 10 minutes: ${JSON.stringify(p)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const wallMs = performance.now() - t0;
    child.send({ type: 'report' });
    const cpu = await nextMessage(child, 'report');
    const [rows] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM sync_changes WHERE client_id = ${RUNNER_CLIENT_ID}`;
    const stats = stubStats();
    // The figures mean nothing unless every mission was planned exactly once.
    if (rows!.n !== missions || stats.calls - callsBefore !== missions) {
      throw new Error(`expected ${missions} runner rows and LLM calls, got ${rows!.n} rows and ${stats.calls - callsBefore} calls`);
    }
    return {
      concurrency,
      wallMs: Math.round(wallMs),
      routedMs: Math.round(routedMs),
      floorMs: Math.round((missions * llmDelayMs) / concurrency),
      llmCalls: stats.calls - callsBefore,
      llmMaxInFlight: stats.maxInFlight,
      runnerRows: rows!.n,
      cpuUserMs: Math.round(cpu.userUs / 1000),
      cpuSystemMs: Math.round(cpu.systemUs / 1000),
      cpuPerMissionMs: Math.round(((cpu.userUs + cpu.systemUs) / 1000 / missions) * 100) / 100,
      idleCpuMsPerSecond: Math.round(idleCpuMsPerSecond * 10) / 10,
      cpuPerMissionNetMs: Math.round((((cpu.userUs + cpu.systemUs) / 1000 - idleCpuMsPerSecond * (wallMs / 1000)) / missions) * 100) / 100,
    };
  } finally {
    if (child.exitCode === null) {
      child.send({ type: 'stop' });
      const exited = once(child, 'exit');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    await sql.end({ timeout: 5 });
  }
}

/** Runs the benchmark against an embedded Postgres in a temporary folder. */
export async function runPlannerBench(opts: PlannerBenchOptions = {}): Promise<PlannerBenchResult> {
  const missions = opts.missions ?? 1000;
  const concurrencies = opts.concurrencies ?? [4, 16];
  const llmDelayMs = opts.llmDelayMs ?? 200;
  const say = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  const dir = mkdtempSync(join(tmpdir(), 'mana-ai-planner-bench-'));
  const db = await startEmbeddedDb({ dir, port: await freePort(), log: pino({ level: 'silent' }) });
  try {
    const runs: PlannerBenchRun[] = [];
    for (const c of concurrencies) {
      say(`planner bench: ${missions} missions, PLANNER_CONCURRENCY=${c} …`);
      // A fresh stub per run, so its in-flight maximum is this run's.
      const stub = await startLlmStub(reply.plan(undefined, { delayMs: llmDelayMs }));
      try {
        const run = await runOnce(db.url('postgres'), stub.url, c, missions, llmDelayMs, () => ({ calls: stub.requests.length, maxInFlight: stub.maxInFlight() }));
        runs.push(run);
        say(`  ${JSON.stringify(run)}`);
      } finally {
        await stub.close();
      }
    }
    return {
      missions,
      llmDelayMs,
      oneByOneMs: missions * llmDelayMs,
      cpus: availableParallelism(),
      runs,
      targetMet: { cpuUnder5msPerMission: runs.every((r) => r.cpuPerMissionMs < CPU_TARGET_MS) },
    };
  } finally {
    await db.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The coordinator side: started by the harness with `--child`; talks over IPC. */
async function child(): Promise<void> {
  const { loadConfig } = await import('../../src/config.js');
  const { startCoordinator } = await import('../../src/coordinator.js');
  const config = loadConfig(process.env);
  const log = pino({ level: config.log.level });
  const sql = createSql(config.databaseUrl!, { max: config.dbPoolMax });
  const coordinator = await startCoordinator({ config, sql, log });
  let base = process.cpuUsage();
  const send = (m: ChildMessage) => process.send!(m);
  process.on('message', (m: { type: string }) => {
    if (m.type === 'arm') {
      base = process.cpuUsage();
      send({ type: 'armed' });
    } else if (m.type === 'poke') {
      void coordinator.scheduler.runOnce().catch(() => undefined);
    } else if (m.type === 'report') {
      const d = process.cpuUsage(base);
      send({ type: 'report', userUs: d.user, systemUs: d.system });
    } else if (m.type === 'stop') {
      void coordinator
        .stop()
        .then(() => sql.end({ timeout: 5 }))
        .finally(() => process.exit(0));
    }
  });
  send({ type: 'ready' });
}

function table(r: PlannerBenchResult): string {
  const lines = [
    `missions: ${r.missions}, stub LLM delay: ${r.llmDelayMs} ms, cpus: ${r.cpus}`,
    `v0.1 one by one (computed): ${(r.oneByOneMs / 1000).toFixed(1)} s`,
    '| PLANNER_CONCURRENCY | all planned + written | LLM floor | routed | LLM calls | max in flight | coordinator CPU | CPU / mission | idle CPU | CPU / mission net of idle |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.runs.map(
      (x) =>
        `| ${x.concurrency} | ${(x.wallMs / 1000).toFixed(1)} s | ${(x.floorMs / 1000).toFixed(1)} s | ${(x.routedMs / 1000).toFixed(2)} s | ${x.llmCalls} | ${x.llmMaxInFlight} | ${((x.cpuUserMs + x.cpuSystemMs) / 1000).toFixed(2)} s | ${x.cpuPerMissionMs} ms | ${x.idleCpuMsPerSecond} ms/s | ${x.cpuPerMissionNetMs} ms |`,
    ),
    `target CPU < ${CPU_TARGET_MS} ms per mission: ${r.targetMet.cpuUnder5msPerMission ? 'met' : 'MISSED'}`,
  ];
  return lines.join('\n');
}

const envList = (name: string): number[] | undefined => (process.env[name] ? process.env[name]!.split(',').map(Number) : undefined);

/** For `npm run bench` (test/bench/run.ts): the defaults, or PLANNER_BENCH_MISSIONS / PLANNER_BENCH_CONCURRENCIES. */
export async function run(): Promise<void> {
  const missions = envList('PLANNER_BENCH_MISSIONS')?.[0];
  const concurrencies = envList('PLANNER_BENCH_CONCURRENCIES');
  const result = await runPlannerBench({
    ...(missions ? { missions } : {}),
    ...(concurrencies ? { concurrencies } : {}),
    log: (line) => process.stderr.write(`[planner-bench] ${line}\n`),
  });
  process.stdout.write(`${table(result)}\n`);
}

if (process.argv.includes('--child')) {
  child().catch((err: unknown) => {
    process.send?.({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(1);
  });
} else if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const missions = args[0] ? Number(args[0]) : undefined;
  const concurrencies = args[1] ? args[1].split(',').map(Number) : undefined;
  runPlannerBench({ ...(missions ? { missions } : {}), ...(concurrencies ? { concurrencies } : {}) })
    .then((r) => {
      process.stdout.write(`${table(r)}\n`);
    })
    .catch((err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    });
}
