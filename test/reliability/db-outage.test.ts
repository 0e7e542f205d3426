/**
 * Database outage: a coordinator child process on its OWN embedded Postgres
 * (a temporary folder and a free port). While it plans, the Postgres is
 * stopped for 15 s (30 s with SOAK=1) and started again on the same folder
 * and port. Meanwhile /health keeps answering 200 and /ready 503; the log
 * reports the outage once, not once per pass or per attempt; the
 * coordinator reconnects by itself (/ready 200 again) and catches up.
 *
 * Holds when every occurrence — planned before the outage, in flight at the
 * LLM when the database went away, and fallen due during the outage — ends
 * planned exactly once.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startEmbeddedDb, type EmbeddedDb } from '../../src/db/embedded.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { freePort } from '../support/free-port.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { killAllChildren, startChild, type ChildCoordinator, type LogLine } from './support/child.js';
import { audit, between, describeOpen, report, seedMissions, sleep, SOAK, waitFor, type SeedMission } from './support/ledger.js';

const OUTAGE_MS = Number(process.env['OUTAGE_MS'] ?? (SOAK ? 30_000 : 15_000));
/** Missions whose title carries this are answered slowly: their LLM call is in flight when the database goes. */
const SLOW = 'slow-llm';

let dir: string;
let port: number;
let pg: EmbeddedDb | undefined;
let sql: Sql | undefined;
let stub: LlmStub;
let child: ChildCoordinator | undefined;

const quiet = pino({ level: 'silent' });
const startPg = () => startEmbeddedDb({ dir, port, database: 'mana_sync', log: quiet });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mana-ai-outage-pg-'));
  port = await freePort();
  pg = await startPg();
  stub = await startLlmStub((req) => reply.plan(undefined, { delayMs: req.user.includes(SLOW) ? 4000 : between(20, 100) }));
});

afterAll(async () => {
  await killAllChildren();
  await sql?.end({ timeout: 1 }).catch(() => undefined);
  await stub?.close();
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function status(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

function missionsNamed(prefix: string, n: number, dueInMs: number): SeedMission[] {
  return Array.from({ length: n }, (_, i) => ({ userId: `${prefix}-user-${i % 5}`, missionId: `${prefix}-${i}`, nextRunAt: new Date(Date.now() + dueInMs + i * 10).toISOString() }));
}

it(`stays live, reports not-ready, logs once, reconnects and catches up after a ${OUTAGE_MS / 1000} s database outage`, async () => {
  child = await startChild({
    name: 'outage',
    env: {
      SYNC_DATABASE_URL: pg!.url('mana_sync'),
      MANA_LLM_URL: stub.url,
      TICK_INTERVAL_MS: '100',
      CLAIM_LEASE_MS: '3000',
      PLANNER_TIMEOUT_MS: '10000',
      PLANNER_RETRY_BACKOFF_MS: '500',
      DB_POOL_MAX: '5',
    },
  });
  sql = createSql(pg!.url('mana_sync'), { max: 2 });
  expect(await status(`${child.url}/ready`)).toBe(200);

  // Before: planned normally.
  const before = missionsNamed('before', 20, -1000);
  await seedMissions(sql, before);
  await waitFor(async () => (await audit(sql!, before)).byStatus['planned'] === before.length, 20_000, 'the first missions to be planned');

  // In flight: the LLM answers these after 4 s, i.e. during the outage.
  const inFlight = missionsNamed(SLOW, 10, -1000).map((m) => ({ ...m, missionId: `${SLOW}-${m.missionId}` }));
  // seedMissions titles each mission after its id, so the stub knows these by SLOW.
  await seedMissions(sql, inFlight);
  // Fall due during the outage.
  const during = missionsNamed('during', 30, 3000);
  await seedMissions(sql, during);
  // Both batches projected, and the slow ones at the LLM.
  await waitFor(async () => stub.requestsFor(SLOW).length >= inFlight.length, 15_000, 'the slow missions to reach the LLM');
  await waitFor(async () => {
    const [row] = await sql!<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.mission_snapshots WHERE mission_id LIKE 'during-%'`;
    return row!.n === during.length;
  }, 10_000, 'the projection to read the missions due during the outage');
  await sql.end({ timeout: 1 });
  sql = undefined;

  // The outage.
  const logsBefore = child.logs.length;
  const outageStart = Date.now();
  await pg!.stop();
  pg = undefined;
  const health: number[] = [];
  const ready: number[] = [];
  while (Date.now() - outageStart < OUTAGE_MS) {
    const [h, r] = await Promise.all([status(`${child.url}/health`), status(`${child.url}/ready`)]);
    health.push(h);
    ready.push(r);
    await sleep(250);
  }
  const outageEnd = Date.now();
  const outageLines: LogLine[] = child.logs.slice(logsBefore);
  pg = await startPg();
  const reconnectMs = await waitFor(async () => (await status(`${child!.url}/ready`)) === 200 && Date.now() - outageEnd, 30_000, '/ready to answer 200 again', 100).catch(
    async (err: unknown) => {
      const body = await fetch(`${child!.url}/ready`, { signal: AbortSignal.timeout(5000) }).then((r) => r.text()).catch((e: unknown) => String(e));
      const exit = child!.alive() ? 'running' : JSON.stringify(await child!.exited);
      throw new Error(`${(err as Error).message}\n/ready: ${body}\nchild: ${exit}\nlast lines: ${JSON.stringify(child!.logs.slice(-4), null, 1)}\nstderr: ${child!.other.join('').slice(-3000)}`);
    },
  );

  sql = createSql(pg.url('mana_sync'), { max: 2 });
  const all = [...before, ...inFlight, ...during];
  await waitFor(
    async () => {
      const a = await audit(sql!, all);
      return a.occurrences === all.length && a.open === 0 && a.projectionMismatch.length === 0;
    },
    30_000,
    'every occurrence to be planned after the outage',
    200,
  ).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}\nopen: ${await describeOpen(sql!)}`);
  });
  const caughtUpMs = Date.now() - outageEnd;
  const result = await audit(sql, all);
  const afterLines = child.logs.slice(logsBefore);
  const problems = (lines: LogLine[]) => {
    const out: Record<string, number> = {};
    for (const l of lines) if (l.level >= 40) out[l.msg] = (out[l.msg] ?? 0) + 1;
    return out;
  };
  const outageLog = describeLines(child.logs, ['scheduler pass'], outageStart, outageEnd);
  await child.stop();

  const passes = Math.round(OUTAGE_MS / 100);
  await report('db-outage', {
    outageMs: outageEnd - outageStart,
    healthProbes: health.length,
    health200: health.filter((s) => s === 200).length,
    ready503: ready.filter((s) => s === 503).length,
    readyOther: ready.filter((s) => s !== 503).length,
    reconnectMs,
    caughtUpMs,
    warnOrErrorLinesDuringOutage: outageLines.filter((l) => l.level >= 40).length,
    linesByMessage: problems(afterLines),
    byStatus: result.byStatus,
    llmCalls: stub.requests.length,
  });

  // Liveness never wavered; readiness said no for the whole outage (after the first probe's race).
  expect(health.every((s) => s === 200)).toBe(true);
  expect(ready.slice(1).every((s) => s === 503)).toBe(true);
  // Logged once when it began and once when it ended — not once per pass (~${passes}) or per attempt.
  expect(child.linesWith('scheduler pass failed'), outageLog).toHaveLength(1);
  expect(child.linesWith('scheduler passes succeed again'), outageLog).toHaveLength(1);
  const outageProblems = outageLines.filter((l) => l.level >= 40);
  expect(outageProblems.length, JSON.stringify(problems(outageLines))).toBeLessThanOrEqual(5);
  // Caught up: each occurrence planned exactly once.
  expect(result.lost).toEqual([]);
  expect(result.byStatus).toEqual({ planned: all.length });
  expect(result.duplicateWrites).toEqual([]);
  expect(result.unwritten).toEqual([]);
  expect(result.projectionMismatch).toEqual([]);
  expect(result.writesBy).toEqual({ 'mana-ai-runner': all.length });
}, SOAK ? 240_000 : 120_000);

/** The lines whose message holds one of `texts`, timed from the outage's start and end, with their errors: what a failed count shows. */
function describeLines(lines: LogLine[], texts: string[], startMs: number, endMs: number): string {
  return lines
    .filter((l) => texts.some((t) => l.msg.includes(t)))
    .map((l) => {
      const at = l.time ? Date.parse(l.time) : NaN;
      const err = (l['err'] as { stack?: string } | undefined) ?? {};
      return `${at - startMs} ms after the start (${at - endMs} after the end): ${l.msg}${err.stack ? `\n  ${err.stack.split('\n').slice(0, 12).join('\n  ')}` : ''}`;
    })
    .join('\n');
}
