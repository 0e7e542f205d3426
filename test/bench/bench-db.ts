/**
 * The database a benchmark runs on: an embedded Postgres in a temp dir (or
 * BENCH_PG_DIR, a persistent data dir reused with its history), or a fresh
 * database on the server of BENCH_DATABASE_URL (a superuser URL; kept with
 * BENCH_KEEP=1). And the median/min/max every bench reports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { pino } from 'pino';
import { startEmbeddedDb, type EmbeddedDb } from '../../src/db/embedded.js';
import { freePort } from '../support/free-port.js';

export interface BenchDb {
  url: string;
  description: string;
  close(): Promise<void>;
}

/** Opens (creating, or reusing when asked to) the database `name` for a bench. */
export async function openBenchDatabase(name: string): Promise<BenchDb> {
  let adminUrl: string;
  let embedded: EmbeddedDb | undefined;
  let tempDir: string | undefined;
  const external = process.env['BENCH_DATABASE_URL'];
  if (external) {
    adminUrl = external;
  } else {
    const dir = process.env['BENCH_PG_DIR'] ?? (tempDir = mkdtempSync(join(tmpdir(), 'mana-ai-bench-pg-')));
    embedded = await startEmbeddedDb({ dir, port: await freePort(), log: pino({ level: 'silent' }) });
    adminUrl = embedded.url('postgres');
  }
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  const [version] = await admin<{ v: string }[]>`SELECT current_setting('server_version') AS v`;
  const reuse = process.env['BENCH_KEEP'] === '1' || (!external && process.env['BENCH_PG_DIR'] !== undefined);
  const [exists] = await admin`SELECT 1 FROM pg_database WHERE datname = ${name}`;
  if (exists && !reuse) await admin.unsafe(`DROP DATABASE ${name} WITH (FORCE)`);
  if (!exists || !reuse) await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    description: `${external ? 'external' : 'embedded'} Postgres ${version?.v ?? '?'}`,
    async close() {
      if (external && !reuse) {
        const a = postgres(adminUrl, { max: 1, onnotice: () => {} });
        await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await a.end();
      }
      await embedded?.stop();
      if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    },
  };
}

export interface Stats {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function stats(runs: number[]): Stats {
  const s = [...runs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, runs };
}

/** The value below which `p` (0–1) of the sorted values fall (nearest rank). */
export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? Number.NaN;
}
