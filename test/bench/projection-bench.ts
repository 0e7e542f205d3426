/**
 * Projection benchmark: `node --import tsx test/bench/projection-bench.ts`
 * (also the first part of `npm run bench`). Writes the `## Projection`
 * section of BENCHMARKS.md.
 *
 * On one database (an embedded Postgres in a temp dir, or a fresh database
 * `mana_ai_bench` on the server of BENCH_DATABASE_URL, a superuser URL), with
 * the deterministic history of gen-history.ts (1,000,000 sync_changes rows),
 * it measures:
 *
 *   (a) the v0.1 baseline: select every aiMissions row ordered by created_at
 *       through postgres.js and merge in JS (a child process: time, peak RSS);
 *   (b) one incremental pass with no new rows (in this process);
 *   (c) one incremental pass after 1,000 new rows (updates to existing missions);
 *   (d) a cold catch-up of the whole history (a child process running the
 *       coordinator's projection with its default settings: rows/s, peak RSS).
 *
 * Environment: BENCH_ROWS (1e6), BENCH_RUNS (runs of (a) and (d), 5),
 * BENCH_DATABASE_URL, BENCH_PG_DIR (a persistent embedded data dir, reused
 * with its history), BENCH_KEEP=1 (keep and reuse the database on the
 * BENCH_DATABASE_URL server too), BENCH_VERIFY=1 (compare every snapshot with the test
 * oracle's full replay after the catch-up; needs a few GB of memory),
 * BENCH_NO_WRITE=1 (do not touch BENCHMARKS.md).
 */
import { readFileSync, existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { createSql, type Sql } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';
import { loadConfig } from '../../src/config.js';
import { createProjection, type Projection } from '../../src/projection/refresh.js';
import { HORIZON_SAFETY_MS } from '../../src/projection/horizon.js';
import { appendUpdates, generateHistory, HISTORY_DEFAULTS, HISTORY_VERSION } from './gen-history.js';
import { replaceSection } from './bench-report.js';
import { runChild } from './projection-bench-children.js';
import { openBenchDatabase, stats, type BenchDb, type Stats } from './bench-db.js';

const here = fileURLToPath(import.meta.url);
const ROOT = resolve(here, '../../..');
const DB_NAME = 'mana_ai_bench';
/** Rounds of (c) measured, after rounds not counted. */
const C_ROUNDS = 15;
const C_WARMUP_ROUNDS = 2;
const silent = pino({ level: 'silent' });

const progress = (line: string) => process.stderr.write(`[projection-bench] ${line}\n`);

// ---------------------------------------------------------------- database


async function openDatabase(): Promise<BenchDb> {
  return openBenchDatabase(DB_NAME);
}

/** Generates the history unless this database already holds the same one (BENCH_PG_DIR reuse). */
async function ensureHistory(sql: Sql, rows: number): Promise<{ generatedMs: number | null }> {
  await sql`CREATE TABLE IF NOT EXISTS bench_history (rows int, seed bigint, version int)`;
  const [have] = await sql<{ rows: number; seed: string; version: number }[]>`SELECT rows, seed::text AS seed, version FROM bench_history`.catch(() => []);
  if (have && have.rows === rows && have.seed === String(HISTORY_DEFAULTS.seed) && have.version === HISTORY_VERSION) {
    progress(`reusing the generated history (${rows.toLocaleString('en-US')} rows)`);
    // Rows appended by an earlier run's (c) go; the generated ones stay.
    await sql`DELETE FROM sync_changes WHERE client_id = 'client-bench'`;
    return { generatedMs: null };
  }
  await sql`DROP TABLE bench_history`;
  await sql`CREATE TABLE bench_history (rows int, seed bigint, version int)`;
  await sql`TRUNCATE sync_changes`;
  const started = performance.now();
  await generateHistory(sql, { rows, progress });
  const generatedMs = performance.now() - started;
  await sql`INSERT INTO bench_history VALUES (${rows}, ${HISTORY_DEFAULTS.seed}, ${HISTORY_VERSION})`;
  return { generatedMs };
}

async function resetProjection(sql: Sql): Promise<void> {
  await sql`TRUNCATE mana_ai.mission_snapshots, mana_ai.agent_snapshots, mana_ai.record_spaces, mana_ai.projection_cursor`;
}

// ---------------------------------------------------------------- verify

/** Every view against the test oracle's model of the devices, over the whole log (BENCH_VERIFY=1). */
async function verify(sql: Sql): Promise<string> {
  const { oracleViews } = await import('../projection/oracle.js');
  const { readLog, readViews } = await import('../projection/log-db.js');
  const expected = oracleViews(await readLog(sql));
  const actual = await readViews(sql);
  const { isDeepStrictEqual } = await import('node:util');
  let mismatches = 0;
  for (const [k, v] of expected) if (!isDeepStrictEqual(actual.get(k), JSON.parse(JSON.stringify(v)))) mismatches++;
  for (const k of actual.keys()) if (!expected.has(k)) mismatches++;
  if (mismatches > 0) throw new Error(`verify: ${mismatches} views differ from the oracle's model of the devices`);
  return `all ${expected.size.toLocaleString('en-US')} present views equal the oracle's model of the devices`;
}

// ---------------------------------------------------------------- run

async function timePasses(projection: Projection, n: number, before?: () => Promise<void>): Promise<{ ms: Stats; rows: number[] }> {
  const ms: number[] = [];
  const rows: number[] = [];
  for (let i = 0; i < n; i++) {
    await before?.();
    const r = await projection.refresh();
    if (!r.ran) throw new Error('refresh did not run (lock held elsewhere?)');
    ms.push(r.durationMs);
    rows.push(r.rowsApplied + r.rowsSkipped);
  }
  return { ms: stats(ms), rows };
}

/** (b), (b') and (c) in this process, on the caught-up projection. */
async function measurePasses(sql: Sql): Promise<{ noop: Stats; noopFullRead: Stats; thousand: Stats; noopAfterWrites: Stats }> {
  const { projection: settings } = loadConfig({});
  const projection = createProjection({ sql, log: silent, batchRows: settings.batchRows, cacheRecords: settings.cacheRecords });
  await projection.columns();
  await projection.refresh(); // warm-up: the first pass of a process reads the window
  const noop = await timePasses(projection, 30);
  progress(`(b) no new rows: median ${noop.ms.median.toFixed(2)} ms`);
  // The same pass when it cannot rule out new rows: a fresh instance has no last-read snapshot.
  const fullMs: number[] = [];
  for (let i = 0; i < 15; i++) {
    const fresh = createProjection({ sql, log: silent, batchRows: settings.batchRows, cacheRecords: settings.cacheRecords });
    await fresh.columns();
    fullMs.push((await fresh.refresh()).durationMs);
  }
  const noopFullRead = stats(fullMs);
  progress(`(b') window query, nothing new: median ${noopFullRead.median.toFixed(2)} ms`);

  let round = 0;
  // Each round from a quiet state: the previous round's rows have fallen below the horizon
  // (HORIZON_SAFETY_MS) and a pass has pruned them, so a pass reads its 1,000 rows only.
  const newRows = async () => {
    await new Promise((r) => setTimeout(r, HORIZON_SAFETY_MS + 500));
    await projection.refresh();
    await appendUpdates(sql, { count: 1000, round: round++ });
  };
  // Not counted: the process's first passes that merge rows compile that code and open the
  // pool's connections, which a running coordinator has long done.
  for (let i = 0; i < C_WARMUP_ROUNDS; i++) {
    await newRows();
    await projection.refresh();
  }
  const thousand = await timePasses(projection, C_ROUNDS, newRows);
  if (thousand.rows.some((n) => n !== 1000)) throw new Error(`(c) passes read ${thousand.rows.join(', ')} rows, expected 1000 each`);
  progress(`(c) 1,000 new rows: median ${thousand.ms.median.toFixed(1)} ms`);
  const noopAfterWrites = await timePasses(projection, 30);
  progress(`(b) after (c): median ${noopAfterWrites.ms.median.toFixed(2)} ms`);
  return { noop: noop.ms, noopFullRead, thousand: thousand.ms, noopAfterWrites: noopAfterWrites.ms };
}

export interface ProjectionBenchResult {
  runs: number;
  logRows: number;
  missionRows: number;
  /** Average JSON text of data + field_meta + field_timestamps per aiMissions row. */
  avgRowBytes: number;
  generatedMs: number | null;
  baseline: { ms: Stats; rssMiB: Stats; cpuS: Stats; pgCpuS: Stats; live: number; due: number };
  /** The catch-up's missions present and due. */
  live: { n: number; due: number };
  noop: Stats;
  noopAfterWrites: Stats;
  noopFullRead: Stats;
  thousand: Stats;
  catchUp: { ms: Stats; logRowsPerSec: Stats; missionRowsPerSec: Stats; rssMiB: Stats; cpuS: Stats; pgCpuS: Stats; rebuilds: number; recordsWritten: number };
  idleRssMiB: number;
  verified: string | null;
  environment: string;
  loadBefore: string;
  loadAfter: string;
  command: string;
}

export async function runProjectionBench(): Promise<ProjectionBenchResult> {
  const logRows = Number(process.env['BENCH_ROWS'] ?? HISTORY_DEFAULTS.rows);
  const runs = Number(process.env['BENCH_RUNS'] ?? 5);
  const loadBefore = loadavg().map((x) => x.toFixed(1)).join(' ');
  const db = await openDatabase();
  const sql = createSql(db.url, { max: 4 });
  try {
    await migrate(sql, silent, { devSyncChanges: true });
    const { generatedMs } = await ensureHistory(sql, logRows);
    const [count] = await sql<{ n: number; bytes: number }[]>`
      SELECT count(*)::int AS n,
             avg(coalesce(octet_length(data::text), 0) + octet_length(field_meta::text) + octet_length(field_timestamps::text))::int AS bytes
      FROM sync_changes WHERE app_id = 'ai' AND table_name = 'aiMissions'`;
    const missionRows = count!.n;
    const avgRowBytes = count!.bytes;
    progress(`history: ${logRows.toLocaleString('en-US')} rows, ${missionRows.toLocaleString('en-US')} of them aiMissions` + (generatedMs ? `, generated in ${(generatedMs / 1000).toFixed(1)} s` : ''));

    const idle = await runChild('idle', db.url);
    const idleRssMiB = idle['maxRssKiB']! / 1024;

    // (a) and (d) alternate, so drift (other load on the machine) hits both alike.
    const base = { ms: [] as number[], rss: [] as number[], cpu: [] as number[], pgCpu: [] as number[], live: 0, due: 0 };
    const cu = { ms: [] as number[], rss: [] as number[], cpu: [] as number[], pgCpu: [] as number[], rebuilds: 0, recordsWritten: 0 };
    const catchUp = async (label: string, into: { ms: number[]; rss: number[]; cpu: number[]; pgCpu: number[] }) => {
      await resetProjection(sql);
      const d = await runChild('catchup', db.url);
      if (d['rowsApplied']! + d['rowsSkipped']! !== missionRows) throw new Error(`catch-up read ${d['rowsApplied']} + ${d['rowsSkipped']} rows, expected ${missionRows}`);
      into.ms.push(d['ms']!);
      into.rss.push(d['maxRssKiB']! / 1024);
      into.cpu.push(d['cpuS']!);
      into.pgCpu.push(d['pgCpuS']!);
      cu.rebuilds = d['rebuilds']!;
      cu.recordsWritten = d['recordsWritten']!;
      progress(`${label}: ${(d['ms']! / 1000).toFixed(2)} s = ${((logRows / d['ms']!) * 1000).toFixed(0)} log rows/s, peak RSS ${(d['maxRssKiB']! / 1024).toFixed(0)} MiB, CPU ${d['cpuS']!.toFixed(1)} s + Postgres ${d['pgCpuS']!.toFixed(1)} s`);
    };
    for (let i = 0; i < runs; i++) {
      const a = await runChild('baseline', db.url);
      base.ms.push(a['ms']!);
      base.rss.push(a['maxRssKiB']! / 1024);
      base.cpu.push(a['cpuS']!);
      base.pgCpu.push(a['pgCpuS']!);
      base.live = a['live']!;
      base.due = a['due']!;
      progress(`(a) run ${i + 1}/${runs}: ${(a['ms']! / 1000).toFixed(2)} s (fetch ${(a['fetchedMs']! / 1000).toFixed(2)} s), peak RSS ${(a['maxRssKiB']! / 1024).toFixed(0)} MiB, CPU ${a['cpuS']!.toFixed(1)} s + Postgres ${a['pgCpuS']!.toFixed(1)} s`);
      await catchUp(`(d) run ${i + 1}/${runs}`, cu);
    }
    const [live] = await sql<{ n: number; due: number }[]>`
      SELECT count(*) FILTER (WHERE present)::int AS n,
             count(*) FILTER (WHERE present AND NOT soft_deleted AND state = 'active' AND next_run_at <= now() AND listed AND author = user_id)::int AS due
      FROM mana_ai.mission_snapshots`;
    progress(`snapshots: ${live!.n} live, ${live!.due} due; v0.1 merge: ${base.live} live, ${base.due} due`);
    const verified = process.env['BENCH_VERIFY'] === '1' ? await verify(sql) : null;
    if (verified) progress(verified);

    const { noop, noopFullRead, thousand, noopAfterWrites } = await measurePasses(sql);

    const loadAfter = loadavg().map((x) => x.toFixed(1)).join(' ');
    const cpu = cpus();
    return {
      runs,
      logRows,
      missionRows,
      avgRowBytes,
      generatedMs,
      baseline: { ms: stats(base.ms), rssMiB: stats(base.rss), cpuS: stats(base.cpu), pgCpuS: stats(base.pgCpu), live: base.live, due: base.due },
      live: live!,
      noop,
      noopAfterWrites,
      noopFullRead,
      thousand,
      catchUp: {
        ms: stats(cu.ms),
        logRowsPerSec: stats(cu.ms.map((ms) => (logRows / ms) * 1000)),
        missionRowsPerSec: stats(cu.ms.map((ms) => (missionRows / ms) * 1000)),
        rssMiB: stats(cu.rss),
        cpuS: stats(cu.cpu),
        pgCpuS: stats(cu.pgCpu),
        rebuilds: cu.rebuilds,
        recordsWritten: cu.recordsWritten,
      },
      idleRssMiB,
      verified,
      environment: `${cpu.length} vCPU (${cpu[0]?.model.trim() ?? '?'}), Node ${process.versions.node}, ${db.description}`,
      loadBefore,
      loadAfter,
      command: 'npm run bench -- projection',
    };
  } finally {
    await sql.end({ timeout: 5 });
    await db.close();
  }
}

// ---------------------------------------------------------------- report

const f0 = (n: number) => Math.round(n).toLocaleString('en-US');
const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const row3 = (label: string, s: Stats, fmt: (n: number) => string, target: string, met: string) =>
  `| ${label} | ${fmt(s.median)} | ${fmt(s.min)} | ${fmt(s.max)} | ${target} | ${met} |`;

export function formatProjectionBench(r: ProjectionBenchResult): string {
  const speedup = r.baseline.ms.median / r.thousand.median;
  const yes = (ok: boolean) => (ok ? 'met' : '**missed**');
  return [
    `**Command:** \`${r.command}\` (the projection part of \`npm run bench\`; the same as \`node --import tsx test/bench/projection-bench.ts\`). ` +
      `${r.runs} runs of (a) and of each (d), alternating; 30 passes for (b), 15 for (b'), ${C_ROUNDS} for (c) after ${C_WARMUP_ROUNDS} not counted, each after 1,000 new rows written once the previous round's rows had fallen below the horizon; (b) is measured again right after the last round.`,
    '',
    `**Data.** ${f0(r.logRows)} \`sync_changes\` rows from \`test/bench/gen-history.ts\` (deterministic, seed ${HISTORY_DEFAULTS.seed}): ` +
      `${f0(r.missionRows)} aiMissions rows of ${f0(HISTORY_DEFAULTS.users)} users × ${HISTORY_DEFAULTS.missionsPerUser} missions ` +
      '(an insert with the whole record, then updates: runner iterations, reschedules, state changes, edits, soft deletes; ~1 % hard deletes, each followed by a re-create; ' +
      'space ids as the webapp stamps them over time, one mission in 40 in a space shared with another member who writes a fifth of its updates), ' +
      `the rest other apps' rows of the same users. Updates carry \`field_meta\` as mana-sync stores it (a string per field), a tenth \`field_timestamps\` instead; ` +
      `data and metadata average ${f0(r.avgRowBytes)} bytes of JSON per aiMissions row. ` +
      (r.generatedMs ? `Generated in SQL in ${f1(r.generatedMs / 1000)} s.` : ''),
    '',
    `**Machine.** ${r.environment}; shared with other work (load average ${r.loadBefore} before, ${r.loadAfter} after).`,
    '',
    '| measure | median | min | max | target | |',
    '|---|---:|---:|---:|---|---|',
    row3('(a) v0.1 full replay: select all aiMissions rows ordered, merge in JS (s)', { ...r.baseline.ms, median: r.baseline.ms.median / 1000, min: r.baseline.ms.min / 1000, max: r.baseline.ms.max / 1000 }, f2, 'baseline', ''),
    row3('(a) peak RSS of that process (MiB)', r.baseline.rssMiB, f0, '', ''),
    row3('(a) CPU of that process (s)', r.baseline.cpuS, f1, '', ''),
    row3('(a) CPU of its Postgres backend (s)', r.baseline.pgCpuS, f1, '', ''),
    row3('(b) incremental pass, no new rows (ms)', r.noop, f2, '< 10 ms', yes(r.noop.median < 10)),
    row3('(b) the same after the (c) rounds, applied set non-empty (ms)', r.noopAfterWrites, f2, '< 10 ms', yes(r.noopAfterWrites.median < 10)),
    row3("(b') no new rows, but the pass cannot rule them out: window query (ms)", r.noopFullRead, f2, '(see below)', ''),
    row3('(c) incremental pass after 1,000 new rows (ms)', r.thousand, f1, `≤ (a)/100 = ${f0(r.baseline.ms.median / 100)} ms`, `${yes(speedup >= 100)} (${f0(speedup)}×)`),
    row3('(d) cold catch-up, whole log (s)', { ...r.catchUp.ms, median: r.catchUp.ms.median / 1000, min: r.catchUp.ms.min / 1000, max: r.catchUp.ms.max / 1000 }, f2, '', ''),
    row3('(d) rows/s, counting all log rows', r.catchUp.logRowsPerSec, f0, '≥ 100,000', yes(r.catchUp.logRowsPerSec.median >= 100_000)),
    row3('(d) rows/s, counting aiMissions rows only', r.catchUp.missionRowsPerSec, f0, '≥ 100,000', yes(r.catchUp.missionRowsPerSec.median >= 100_000)),
    row3('(d) peak RSS of the coordinator process (MiB)', r.catchUp.rssMiB, f0, '< 256 MiB', yes(r.catchUp.rssMiB.max < 256)),
    row3('(d) CPU of the coordinator process (s)', r.catchUp.cpuS, f1, '', ''),
    row3('(d) CPU of its Postgres backends (s)', r.catchUp.pgCpuS, f1, '', ''),
    '',
    `Peak RSS is \`process.resourceUsage().maxRSS\` of a child process that does only that step, running this file compiled to JS as the Dockerfile runs the coordinator; a child that only loads the same modules peaks at ${f0(r.idleRssMiB)} MiB. ` +
      `The catch-up wrote ${f0(r.catchUp.recordsWritten)} snapshots with ${r.catchUp.rebuilds} rebuilds: ${f0(r.live.n)} missions present, ${f0(r.live.due)} due ` +
      `(the v0.1 merge, with rules of its own — instants, every delete removing — counts ${f0(r.baseline.live)} and ${f0(r.baseline.due)}).` +
      (r.verified ? ` BENCH_VERIFY: ${r.verified}.` : ''),
  ].join('\n');
}

const SECTION = '## Projection';

/** Replaces (or adds) the `## Projection` section of BENCHMARKS.md, leaving the rest as it is. */
export function writeProjectionSection(body: string, notes: string): void {
  replaceSection(SECTION, `${SECTION}\n\n${body}\n\n${notes}\n`, { first: true });
}

/** Explanations kept with the figures; between the markers so a run keeps them. */
function notesOf(): string {
  const file = join(ROOT, 'BENCHMARKS.md');
  if (!existsSync(file)) return '';
  const text = readFileSync(file, 'utf8');
  const a = text.indexOf('<!-- projection-notes -->');
  const b = text.indexOf('<!-- /projection-notes -->');
  return a >= 0 && b > a ? text.slice(a, b + '<!-- /projection-notes -->'.length) : '<!-- projection-notes -->\n<!-- /projection-notes -->';
}

/** The `npm run bench` entry (test/bench/run.ts). */
export async function run(): Promise<void> {
  const result = await runProjectionBench();
  const body = formatProjectionBench(result);
  process.stdout.write(`${SECTION}\n\n${body}\n`);
  if (process.env['BENCH_NO_WRITE'] !== '1') writeProjectionSection(body, notesOf());
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
