/**
 * The projection bench's child processes ((a) the v0.1 baseline, (d) the
 * cold catch-up, and an idle child for the RSS floor), each running this
 * file compiled to plain JS with `--child <mode>` and printing its figures
 * as one JSON line.
 */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { pino } from 'pino';
import { createSql } from '../../src/db/pool.js';
import { loadConfig } from '../../src/config.js';
import { createProjection } from '../../src/projection/refresh.js';

const here = fileURLToPath(import.meta.url);
const ROOT = resolve(here, '../../..');
const silent = pino({ level: 'silent' });

const CHILD_APP = 'mana-ai-bench-child';

/** CPU seconds of this process and, when the server runs on this machine, of its backends serving us. */
async function cpuSeconds(sql: postgres.Sql, since: NodeJS.CpuUsage): Promise<{ cpuS: number; pgCpuS: number }> {
  const c = process.cpuUsage(since);
  let pgCpuS = Number.NaN;
  try {
    const pids = await sql<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE application_name = ${CHILD_APP}`;
    const { readFileSync } = await import('node:fs');
    pgCpuS = 0;
    for (const { pid } of pids) {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      pgCpuS += (Number(f[11]) + Number(f[12])) / 100;
    }
  } catch {
    pgCpuS = Number.NaN; // a remote server
  }
  return { cpuS: (c.user + c.system) / 1e6, pgCpuS };
}

/** (a) v0.1: every aiMissions row, ordered, into memory, merged field by field in JS. */
async function childBaseline(url: string): Promise<Record<string, number>> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: CHILD_APP } });
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const rows = await sql<
    { record_id: string; user_id: string; op: string; data: Record<string, unknown> | null; field_timestamps: Record<string, unknown> | null; field_meta: Record<string, unknown> | null; created_at: Date }[]
  >`SELECT * FROM sync_changes WHERE app_id = 'ai' AND table_name = 'aiMissions' ORDER BY created_at`;
  const fetchedMs = performance.now() - started;
  const tsOf = (entry: unknown): number | undefined => {
    const at = typeof entry === 'object' && entry !== null ? (entry as { at?: unknown }).at : entry;
    return typeof at === 'string' ? Date.parse(at) : undefined;
  };
  const missions = new Map<string, { record: Record<string, unknown>; ts: Record<string, number> }>();
  for (const row of rows) {
    const key = `${row.user_id}:${row.record_id}`;
    if (row.op === 'delete') {
      missions.delete(key);
      continue;
    }
    const data = row.data ?? {};
    const meta = row.field_meta ?? {};
    const stamps = row.field_timestamps ?? {};
    const created = row.created_at.getTime();
    let m = missions.get(key);
    if (!m) {
      m = { record: { id: row.record_id }, ts: {} };
      missions.set(key, m);
    }
    for (const [k, v] of Object.entries(data)) {
      const t = tsOf(meta[k]) ?? tsOf(stamps[k]) ?? created;
      const cur = m.ts[k];
      if (cur === undefined || t >= cur) {
        m.record[k] = v;
        m.ts[k] = t;
      }
    }
  }
  const now = Date.now();
  let due = 0;
  for (const { record } of missions.values()) {
    if (record['state'] === 'active' && !record['deletedAt'] && typeof record['nextRunAt'] === 'string' && Date.parse(record['nextRunAt']) <= now) due++;
  }
  const ms = performance.now() - started;
  const cpu = await cpuSeconds(sql, cpu0);
  await sql.end();
  return { ms, fetchedMs, rows: rows.length, live: missions.size, due, ...cpu };
}

/** (d) the coordinator's projection, cold, with its default settings. */
async function childCatchUp(url: string): Promise<Record<string, number>> {
  // The coordinator's defaults, unless PROJECTION_BATCH_ROWS / PROJECTION_CACHE_RECORDS say otherwise.
  const { projection: settings } = loadConfig({
    PROJECTION_BATCH_ROWS: process.env['PROJECTION_BATCH_ROWS'],
    PROJECTION_CACHE_RECORDS: process.env['PROJECTION_CACHE_RECORDS'],
  });
  const sql = createSql(url, { max: 4, appName: CHILD_APP });
  const projection = createProjection({ sql, log: silent, batchRows: settings.batchRows, cacheRecords: settings.cacheRecords });
  await projection.columns();
  const cpu0 = process.cpuUsage();
  const r = await projection.refresh();
  const cpu = await cpuSeconds(sql, cpu0);
  await sql.end();
  return { ms: r.durationMs, rowsApplied: r.rowsApplied, rowsSkipped: r.rowsSkipped, recordsWritten: r.recordsWritten, rebuilds: r.rebuilds, ...cpu };
}

/** An idle child with the same imports: the floor under the peak RSS figures. */
async function childIdle(): Promise<Record<string, number>> {
  return { ms: 0 };
}

/**
 * The children run this file compiled to plain JS (esbuild, dependencies
 * external), as the Dockerfile runs the coordinator: tsx would add its own
 * ~50 MiB (an esbuild service and a loader thread) to every peak RSS.
 */
let compiled: string | undefined;
async function compiledChild(): Promise<string> {
  if (compiled) return compiled;
  const { build } = await import('esbuild');
  // Inside the repository, so the bundle's bare imports resolve from node_modules.
  const out = join(ROOT, 'node_modules', '.cache', 'mana-ai-bench', 'projection-bench-children.mjs');
  await build({ entryPoints: [here], bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outfile: out, logLevel: 'error' });
  compiled = out;
  return out;
}

export async function runChild(mode: 'baseline' | 'catchup' | 'idle', url: string): Promise<Record<string, number>> {
  const child = spawn(process.execPath, [await compiledChild(), '--child', mode], {
    cwd: ROOT,
    env: { ...process.env, BENCH_CHILD_URL: url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((res) => child.on('close', res));
  if (code !== 0) throw new Error(`bench child ${mode} exited with ${code}`);
  return JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number>;
}

if (process.argv[2] === '--child') {
  const mode = process.argv[3];
  const url = process.env['BENCH_CHILD_URL']!;
  const out = mode === 'baseline' ? await childBaseline(url) : mode === 'catchup' ? await childCatchUp(url) : await childIdle();
  process.stdout.write(`${JSON.stringify({ ...out, maxRssKiB: process.resourceUsage().maxRSS })}\n`);
  process.exit(0);
}
