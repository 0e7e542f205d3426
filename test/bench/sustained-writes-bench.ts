/**
 * Sustained-writes benchmark: `npm run bench -- sustained` (or
 * `node --import tsx test/bench/sustained-writes-bench.ts`). Writes the
 * `## Sustained writes` section of BENCHMARKS.md.
 *
 * 100,000 missions (gen-history.ts, deterministic, in SQL, scheduled ahead
 * so none falls due), projected; then a coordinator runs in this process
 * with its own timer (TICK_INTERVAL_MS default) while writers commit
 * aiMissions updates spread over all missions (gen-history.ts appendUpdates:
 * runner iterations, reschedules, state changes) at RATE rows/s for
 * DURATION_S, one transaction of RATE/10 rows every 100 ms, on two
 * connections.
 *
 * - Lag, commit → projected: a pass reads everything committed before its
 *   snapshot, which it takes after it starts, so a batch committed at t is
 *   projected at the latest when the first pass that starts after t ends.
 *   Every refresh's start and end are recorded (the projection's refresh is
 *   wrapped), and each batch's lag is that end minus its commit. The rows the
 *   passes applied must add up to the rows written, and the snapshots must
 *   hold every mission's last write, or the run fails.
 * - Overlap: no refresh may start before the previous one ended.
 * - Memory: the process's RSS and V8 heap, sampled every second.
 *
 * Environment: BENCH_SUSTAINED_RATE (5000), BENCH_SUSTAINED_SECONDS (60),
 * BENCH_SUSTAINED_MISSIONS (100000), the database variables of bench-db.ts,
 * BENCH_NO_WRITE=1 (do not touch BENCHMARKS.md).
 */
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { createSql, type Sql } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';
import { createProjection } from '../../src/projection/refresh.js';
import { fastPathIndexSql } from '../../src/projection/fast-path-index.js';
import { startTestCoordinator } from '../support/coordinator.js';
import { appendUpdates, generateHistory } from './gen-history.js';
import { openBenchDatabase, percentile } from './bench-db.js';
import { reportSection } from './bench-report.js';

const SECTION = '## Sustained writes';
const MISSIONS_PER_USER = 5;
const BATCH_EVERY_MS = 100;
const WRITERS = 2;
const progress = (line: string) => process.stderr.write(`[sustained-writes-bench] ${line}\n`);
const MiB = (bytes: number) => bytes / 1024 / 1024;

interface Pass {
  start: number;
  end: number;
  rows: number;
}

export interface SustainedResult {
  rate: number;
  seconds: number;
  missions: number;
  rowsWritten: number;
  achievedRate: number;
  rowsApplied: number;
  lagMs: { p50: number; p99: number; max: number };
  passes: number;
  passMs: { p50: number; p99: number; max: number };
  overlaps: number;
  rssMiB: { start: number; end: number; max: number };
  heapMiB: { start: number; end: number; max: number };
  environment: string;
  loadBefore: string;
  loadAfter: string;
}

/** Writers committing `rate` rows/s for `seconds`; returns each batch's commit time and size. */
async function write(sql: Sql, opts: { rate: number; seconds: number; missions: number }): Promise<{ at: number; rows: number }[]> {
  const perBatch = Math.max(1, Math.round((opts.rate * BATCH_EVERY_MS) / 1000));
  const batches = Math.round((opts.seconds * 1000) / BATCH_EVERY_MS);
  const commits: { at: number; rows: number }[] = [];
  const t0 = performance.now();
  let next = 0;
  const writer = async () => {
    for (let i = next++; i < batches; i = next++) {
      const due = t0 + i * BATCH_EVERY_MS;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await appendUpdates(sql, { count: perBatch, round: 1000 + i, users: opts.missions / MISSIONS_PER_USER, missionsPerUser: MISSIONS_PER_USER });
      commits.push({ at: performance.now(), rows: perBatch });
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, writer));
  return commits;
}

/** Each mission's last write must be in its snapshot: the newest updatedAt per mission in the log equals the projected one. */
async function verifyProjected(sql: Sql): Promise<void> {
  const [row] = await sql<{ differ: number }[]>`
    WITH last AS (
      SELECT DISTINCT ON (user_id, record_id) user_id, record_id, data ->> 'updatedAt' AS updated
      FROM sync_changes WHERE app_id = 'ai' AND table_name = 'aiMissions' AND client_id = 'client-bench'
      ORDER BY user_id, record_id, created_at DESC, data ->> 'updatedAt' DESC)
    SELECT count(*)::int AS differ FROM last l
    LEFT JOIN mana_ai.mission_snapshots s ON s.user_id = l.user_id AND s.mission_id = l.record_id
    WHERE s.fields ->> 'updatedAt' IS DISTINCT FROM l.updated`;
  if (row!.differ !== 0) throw new Error(`${row!.differ} missions' snapshots do not hold their last write`);
}

export async function runSustainedWritesBench(): Promise<SustainedResult> {
  const rate = Number(process.env['BENCH_SUSTAINED_RATE'] ?? 5000);
  const seconds = Number(process.env['BENCH_SUSTAINED_SECONDS'] ?? 60);
  const missions = Number(process.env['BENCH_SUSTAINED_MISSIONS'] ?? 100_000);
  const loadBefore = loadavg().map((x) => x.toFixed(1)).join(' ');
  const db = await openBenchDatabase('mana_ai_sustained');
  const sql = createSql(db.url, { max: 10 });
  const writers = createSql(db.url, { max: WRITERS });
  try {
    await migrate(sql, pino({ level: 'silent' }), { devSyncChanges: true });
    await sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.agent_snapshots, mana_ai.record_spaces, mana_ai.projection_cursor`;
    // A fifth of the log another app's, as in the projection bench: 1.25 rows per mission, each mission's first an insert.
    await generateHistory(sql, { rows: Math.round(missions * 1.25), users: missions / MISSIONS_PER_USER, missionsPerUser: MISSIONS_PER_USER, runsAheadYears: 100, progress });
    await sql.unsafe(fastPathIndexSql('public'));
    await createProjection({ sql, log: pino({ level: 'silent' }), batchRows: 5000, cacheRecords: 50_000 }).refresh();
    await sql`VACUUM (ANALYZE) mana_ai.mission_snapshots`;
    progress(`${missions.toLocaleString('en-US')} missions projected; writing ${rate.toLocaleString('en-US')} rows/s for ${seconds} s`);

    const c = await startTestCoordinator(sql, { TICK_INTERVAL_MS: '1000' });
    const passes: Pass[] = [];
    const refresh = c.projection.refresh.bind(c.projection);
    c.projection.refresh = async () => {
      const start = performance.now();
      const r = await refresh();
      passes.push({ start, end: performance.now(), rows: r.rowsApplied + r.rowsSkipped });
      return r;
    };
    const memory: { rss: number; heap: number }[] = [];
    const sample = () => {
      const m = process.memoryUsage();
      memory.push({ rss: MiB(m.rss), heap: MiB(m.heapUsed) });
    };
    sample();
    const sampler = setInterval(sample, 1000);
    let commits: { at: number; rows: number }[];
    const t0 = performance.now();
    try {
      commits = await write(writers, { rate, seconds, missions });
      const lastCommit = Math.max(...commits.map((b) => b.at));
      // Until a pass that started after the last commit has ended.
      while (!passes.some((p) => p.start > lastCommit)) await new Promise((r) => setTimeout(r, 100));
    } finally {
      clearInterval(sampler);
      sample();
      await c.stop();
    }
    const elapsedS = (Math.max(...commits.map((b) => b.at)) - t0) / 1000;
    await verifyProjected(sql);

    const sorted = [...passes].sort((a, b) => a.start - b.start);
    let overlaps = 0;
    for (let i = 1; i < sorted.length; i++) if (sorted[i]!.start < sorted[i - 1]!.end) overlaps++;
    const lags = commits.map((b) => sorted.find((p) => p.start > b.at)!.end - b.at);
    const rowsWritten = commits.reduce((n, b) => n + b.rows, 0);
    const rowsApplied = passes.reduce((n, p) => n + p.rows, 0);
    if (rowsApplied !== rowsWritten) throw new Error(`the passes applied ${rowsApplied} rows, ${rowsWritten} were written`);
    const durations = passes.map((p) => p.end - p.start);
    const cpu = cpus();
    return {
      rate,
      seconds,
      missions,
      rowsWritten,
      achievedRate: rowsWritten / elapsedS,
      rowsApplied,
      lagMs: { p50: percentile(lags, 0.5), p99: percentile(lags, 0.99), max: Math.max(...lags) },
      passes: passes.length,
      passMs: { p50: percentile(durations, 0.5), p99: percentile(durations, 0.99), max: Math.max(...durations) },
      overlaps,
      rssMiB: { start: memory[0]!.rss, end: memory.at(-1)!.rss, max: Math.max(...memory.map((m) => m.rss)) },
      heapMiB: { start: memory[0]!.heap, end: memory.at(-1)!.heap, max: Math.max(...memory.map((m) => m.heap)) },
      environment: `${cpu.length} vCPU (${cpu[0]?.model.trim() ?? '?'}), Node ${process.versions.node}, ${db.description}`,
      loadBefore,
      loadAfter: loadavg().map((x) => x.toFixed(1)).join(' '),
    };
  } finally {
    await writers.end({ timeout: 5 });
    await sql.end({ timeout: 5 });
    await db.close();
  }
}

const f0 = (n: number) => Math.round(n).toLocaleString('en-US');

export function formatSustainedWritesBench(r: SustainedResult): string {
  const met = (ok: boolean) => (ok ? 'met' : '**missed**');
  return [
    '**Command:** `npm run bench -- sustained` (the same as `node --import tsx test/bench/sustained-writes-bench.ts`).',
    '',
    `**Load.** ${f0(r.missions)} missions (\`test/bench/gen-history.ts\`, deterministic, in SQL; scheduled ahead, so none falls due), projected, with the fast-path index. ` +
      `A coordinator in the bench's process, on its own timer (\`TICK_INTERVAL_MS\` 1000, the default), while two connections commit aiMissions updates spread over all missions ` +
      `(\`appendUpdates\`: runner iterations, reschedules, state changes) at ${f0(r.rate)} rows/s for ${r.seconds} s, one transaction of ${f0((r.rate * BATCH_EVERY_MS) / 1000)} rows every ${BATCH_EVERY_MS} ms. ` +
      'A batch counts as projected when the first refresh that started after its commit has ended (that refresh reads everything committed before it started); ' +
      'the rows the refreshes applied add up to the rows written, and every mission\'s snapshot holds its last write, or the bench fails.',
    '',
    `**Machine.** ${r.environment}; shared with other work (load average ${r.loadBefore} before, ${r.loadAfter} after).`,
    '',
    '| measure | figure | target | |',
    '|---|---:|---|---|',
    `| rows written (rows/s achieved) | ${f0(r.rowsWritten)} (${f0(r.achievedRate)}/s) | ${f0(r.rate)}/s for ${r.seconds} s | ${met(r.achievedRate >= r.rate * 0.97)} |`,
    `| lag, commit → projected: p50 / p99 / max (ms) | ${f0(r.lagMs.p50)} / ${f0(r.lagMs.p99)} / ${f0(r.lagMs.max)} | p99 ≤ 2,000 ms | ${met(r.lagMs.p99 <= 2000)} |`,
    `| refreshes run; duration p50 / p99 / max (ms) | ${r.passes}; ${f0(r.passMs.p50)} / ${f0(r.passMs.p99)} / ${f0(r.passMs.max)} | | |`,
    `| refreshes that started before the previous one ended | ${r.overlaps} | 0 | ${met(r.overlaps === 0)} |`,
    `| process RSS: start / end / max (MiB) | ${f0(r.rssMiB.start)} / ${f0(r.rssMiB.end)} / ${f0(r.rssMiB.max)} | flat | ${met(r.rssMiB.end <= r.rssMiB.start * 1.25)} |`,
    `| V8 heap used: start / end / max (MiB) | ${f0(r.heapMiB.start)} / ${f0(r.heapMiB.end)} / ${f0(r.heapMiB.max)} | | |`,
    '',
    'RSS and heap are those of the bench\'s process, which also runs the writers (a few statements in flight), sampled every second from the coordinator\'s start to its stop.',
    '',
    '**Why these figures.** The scheduler starts each pass one interval after the previous one started (at once when that pass took longer), so a row committed just after a pass read the log waits for the next pass to start and to end: ' +
      'the lag is at most about the interval plus one pass, and a pass lasts as long as merging the rows of one interval takes. ' +
      '(Counted from the end of a pass, the interval made the lag the interval plus two passes.) ' +
      'Passes never overlap by construction: one scheduler per process runs them one after another, and across instances the refresh takes a transaction-level advisory lock (another instance\'s pass skips). ' +
      'Memory stays flat because a pass keeps nothing between passes but the cursor\'s applied set (the rows of the last seconds, by id) and its record cache is bounded (`CACHE_BUDGET_BYTES`).',
  ].join('\n');
}

/** The `npm run bench` entry (test/bench/run.ts). */
export async function run(): Promise<void> {
  reportSection(SECTION, formatSustainedWritesBench(await runSustainedWritesBench()));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
