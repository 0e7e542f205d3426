/**
 * Busy-pass benchmark: `npm run bench -- busy-pass` (or
 * `node --import tsx test/bench/busy-pass-bench.ts`). Writes the
 * `## Busy projection pass` section of BENCHMARKS.md.
 *
 * On a busy database every pass runs the window query: any commit anywhere
 * makes the snapshot probe say "maybe". For two logs — 200,000 rows of 2,000
 * users, and 4,000,000 rows of 200,000 users, half of each aiMissions rows,
 * ten per mission
 * (gen-history.ts, deterministic, in SQL; missions scheduled ahead, so none
 * is due and a pass has nothing to do but look) — a coordinator (in this
 * process, its timer off) runs passes through its own POST /internal/tick,
 * with another app committing one row to sync_changes before each: first
 * without the fast-path index, then with it. Reported: the median
 * `durationMs` of PASSES passes after WARMUP not counted, the same for the
 * projection's refresh alone, and a quiet pass (nothing committed between).
 *
 * Environment: BENCH_BUSY_SCALE (multiplies rows and users; 1), the
 * database variables of bench-db.ts, BENCH_NO_WRITE=1 (do not touch BENCHMARKS.md).
 */
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import postgres from 'postgres';
import { pino } from 'pino';
import { createSql, type Sql } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';
import { createProjection } from '../../src/projection/refresh.js';
import { fastPathIndexSql } from '../../src/projection/fast-path-index.js';
import { startTestCoordinator, type TestCoordinator } from '../support/coordinator.js';
import { generateHistory, HISTORY_DEFAULTS } from './gen-history.js';
import { openBenchDatabase, stats, type Stats } from './bench-db.js';
import { reportSection } from './bench-report.js';

const SECTION = '## Busy projection pass';
const PASSES = 25;
const WARMUP = 5;
const progress = (line: string) => process.stderr.write(`[busy-pass-bench] ${line}\n`);

interface Size {
  rows: number;
  users: number;
  missionsPerUser: number;
}

interface Measured {
  tick: Stats;
  refresh: Stats;
  quietTick: Stats;
}

interface SizeResult extends Size {
  missionRows: number;
  generatedS: number;
  catchUpS: number;
  indexBuildS: number;
  without: Measured;
  with: Measured;
}

export interface BusyPassResult {
  sizes: SizeResult[];
  environment: string;
  loadBefore: string;
  loadAfter: string;
}

/** Another app's row, committed on its own connection: what makes a busy database busy. */
function otherApp(url: string): { commit(): Promise<void>; close(): Promise<void> } {
  const other = postgres(url, { max: 1, onnotice: () => {} });
  let n = 0;
  return {
    async commit() {
      await other`
        INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
        VALUES ('todo', 'tasks', ${`bench-task-${n++}`}, 'bench-user', 'update', '{"done":true}'::jsonb, 'bench-other-app')`;
    },
    close: () => other.end({ timeout: 5 }),
  };
}

async function tick(c: TestCoordinator, key: string): Promise<number> {
  const res = await fetch(`${c.url}/internal/tick`, { method: 'POST', headers: { 'x-service-key': key } });
  if (res.status !== 200) throw new Error(`POST /internal/tick answered ${res.status}, expected 200`);
  const body = (await res.json()) as { durationMs: number; projectionRan: boolean; missionsDue: number; rowsApplied: number };
  if (!body.projectionRan) throw new Error('the pass did not run the projection (refresh lock held elsewhere?)');
  if (body.missionsDue !== 0 || body.rowsApplied !== 0) throw new Error(`expected a no-op pass, got ${JSON.stringify(body)}`);
  return body.durationMs;
}

/** Busy and quiet passes of a coordinator on this database as it is. */
async function measure(sql: Sql, url: string): Promise<Measured> {
  const key = 'busy-pass-bench-key';
  const c = await startTestCoordinator(sql, { TICK_ENABLED: 'false', MANA_SERVICE_KEY: key });
  const other = otherApp(url);
  try {
    const busy = async (n: number) => {
      const ms: number[] = [];
      for (let i = 0; i < n; i++) {
        await other.commit();
        ms.push(await tick(c, key));
      }
      return ms;
    };
    await busy(WARMUP);
    const tickMs = await busy(PASSES);
    const refreshMs: number[] = [];
    for (let i = 0; i < PASSES; i++) {
      await other.commit();
      refreshMs.push((await c.projection.refresh()).durationMs);
    }
    const quietMs: number[] = [];
    for (let i = 0; i < PASSES; i++) quietMs.push(await tick(c, key));
    return { tick: stats(tickMs), refresh: stats(refreshMs), quietTick: stats(quietMs) };
  } finally {
    await other.close();
    await c.stop();
  }
}

async function runSize(size: Size, index: number): Promise<SizeResult> {
  const db = await openBenchDatabase(`mana_ai_busy_${index}`);
  const sql = createSql(db.url, { max: 10 });
  try {
    await migrate(sql, pino({ level: 'silent' }), { devSyncChanges: true });
    await sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.projection_cursor`;
    const label = `${size.rows.toLocaleString('en-US')} rows, ${size.users.toLocaleString('en-US')} users`;
    let t = performance.now();
    await generateHistory(sql, { rows: size.rows, users: size.users, missionsPerUser: size.missionsPerUser, noiseEvery: 2, runsAheadYears: 100, progress: (l) => progress(`${label}: ${l}`) });
    const generatedS = (performance.now() - t) / 1000;
    t = performance.now();
    const catchUp = await createProjection({ sql, log: pino({ level: 'silent' }), batchRows: 5000, cacheRecords: 50_000 }).refresh();
    const catchUpS = (performance.now() - t) / 1000;
    await sql`VACUUM (ANALYZE) mana_ai.mission_snapshots`;
    const [count] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM sync_changes WHERE app_id = 'ai' AND table_name = 'aiMissions'`;
    progress(`${label}: generated in ${generatedS.toFixed(0)} s, caught up ${catchUp.rowsApplied.toLocaleString('en-US')} rows in ${catchUpS.toFixed(0)} s`);
    const without = await measure(sql, db.url);
    progress(`${label}, no index: busy tick median ${without.tick.median.toFixed(2)} ms, refresh ${without.refresh.median.toFixed(2)} ms, quiet tick ${without.quietTick.median.toFixed(2)} ms`);
    t = performance.now();
    await sql.unsafe(fastPathIndexSql('public'));
    const indexBuildS = (performance.now() - t) / 1000;
    await sql`ANALYZE sync_changes`;
    const withIndex = await measure(sql, db.url);
    progress(`${label}, fast-path index (built in ${indexBuildS.toFixed(1)} s): busy tick median ${withIndex.tick.median.toFixed(2)} ms, refresh ${withIndex.refresh.median.toFixed(2)} ms, quiet tick ${withIndex.quietTick.median.toFixed(2)} ms`);
    return { ...size, missionRows: count!.n, generatedS, catchUpS, indexBuildS, without, with: withIndex };
  } finally {
    await sql.end({ timeout: 5 });
    await db.close();
  }
}

export async function runBusyPassBench(): Promise<BusyPassResult> {
  const scale = Number(process.env['BENCH_BUSY_SCALE'] ?? 1);
  const loadBefore = loadavg().map((x) => x.toFixed(1)).join(' ');
  const sizes: SizeResult[] = [];
  // Ten aiMissions rows per mission in both logs.
  const plan: Size[] = [
    { rows: 200_000, users: 2_000, missionsPerUser: 5 },
    { rows: 4_000_000, users: 200_000, missionsPerUser: 1 },
  ].map((s) => ({ ...s, rows: Math.round(s.rows * scale), users: Math.max(1, Math.round(s.users * scale)) }));
  for (const [i, size] of plan.entries()) sizes.push(await runSize(size, i));
  const cpu = cpus();
  return {
    sizes,
    environment: `${cpu.length} vCPU (${cpu[0]?.model.trim() ?? '?'}), Node ${process.versions.node}`,
    loadBefore,
    loadAfter: loadavg().map((x) => x.toFixed(1)).join(' '),
  };
}

const f2 = (n: number) => n.toFixed(2);
const f0 = (n: number) => Math.round(n).toLocaleString('en-US');
const cell = (s: Stats) => `${f2(s.median)} (${f2(s.min)}–${f2(s.max)})`;

export function formatBusyPassBench(r: BusyPassResult): string {
  const [small, big] = r.sizes;
  const ratio = small && big ? big.with.tick.median / small.with.tick.median : Number.NaN;
  const met = (ok: boolean) => (ok ? 'met' : '**missed**');
  const lines = [
    '**Command:** `npm run bench -- busy-pass` (the same as `node --import tsx test/bench/busy-pass-bench.ts`).',
    '',
    `**Data.** Two logs from \`test/bench/gen-history.ts\` (deterministic, seed ${HISTORY_DEFAULTS.seed}, generated in SQL): every other row another app's, the rest aiMissions rows, ten per mission (5 missions per user in the small log, 1 in the large), every mission scheduled ahead so that none is due. A coordinator in the bench's process (timer off) runs each pass through its own \`POST /internal/tick\`; before each, another app commits one row to \`sync_changes\`, so the snapshot probe cannot rule out new rows and every pass runs the window query. ${PASSES} passes after ${WARMUP} not counted; then ${PASSES} refreshes alone the same way, and ${PASSES} quiet passes (nothing committed between).`,
    '',
    `**Machine.** ${r.environment}, embedded Postgres; shared with other work (load average ${r.loadBefore} before, ${r.loadAfter} after).`,
    '',
    '| log | fast-path index | busy pass, median (min–max) ms | refresh alone (ms) | quiet pass (ms) | target |',
    '|---|---|---:|---:|---:|---|',
  ];
  for (const s of r.sizes) {
    const label = `${f0(s.rows)} rows (${f0(s.missionRows)} aiMissions), ${f0(s.users)} users`;
    lines.push(`| ${label} | absent | ${cell(s.without.tick)} | ${cell(s.without.refresh)} | ${cell(s.without.quietTick)} | |`);
    lines.push(`| ${label} | present | ${cell(s.with.tick)} | ${cell(s.with.refresh)} | ${cell(s.with.quietTick)} | ≤ 5 ms: ${met(s.with.tick.median <= 5)} |`);
  }
  lines.push(
    '',
    `With the index, the large log's busy pass is ${ratio.toFixed(2)}× the small one's (target ≤ 2×: ${met(ratio <= 2)}). ` +
      r.sizes.map((s) => `${f0(s.rows)} rows: generated in ${f0(s.generatedS)} s, caught up from scratch in ${f0(s.catchUpS)} s, index built CONCURRENTLY in ${s.indexBuildS.toFixed(1)} s`).join('; ') +
      '.',
  );
  return lines.join('\n');
}

/** The `npm run bench` entry (test/bench/run.ts). */
export async function run(): Promise<void> {
  reportSection(SECTION, formatBusyPassBench(await runBusyPassBench()));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
