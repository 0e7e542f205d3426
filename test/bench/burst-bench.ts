/**
 * The top of the hour, and memory at size:
 * `node --import tsx test/bench/burst-bench.ts` (or `npm run bench -- burst`).
 *
 * (1) One coordinator. 1,000,000 missions are written into sync_changes by
 *     one SQL statement per 100,000 (generate_series, deterministic) and
 *     projected; RSS (after a forced GC) is taken before, after projecting
 *     and after 10,000 sockets authenticated: the per-mission and per-socket
 *     cost. Then 100,000 of those missions (one per user; users 0–9,999 have
 *     a socket, the other 90,000 no device) are rescheduled to one common
 *     instant a few seconds ahead, and the bench waits until the projection
 *     holds all of them before that instant. Measured: frame arrival − the
 *     instant for every socket user (each claims its occurrence on arrival,
 *     as a device does), the time until no occurrence of the instant is
 *     still 'created', and the coordinator's peak RSS (sampled every 50 ms)
 *     over the burst.
 * (2) The same burst (no extra missions) against 3 coordinators on one
 *     database, the sockets spread over them: every occurrence handled
 *     exactly once — one occurrence per mission (the reliability ledger's
 *     audit), each socket user's frame arrives once and its claim is granted
 *     once, each of the 90,000 others is handed to exactly one instance's
 *     server planner.
 *
 * The server planner is a recording no-op (server planning is then limited
 * by mana-llm, not by routing; the fallback bench measures planning). Env:
 * BURST_BENCH_DUE (100000), BURST_BENCH_SOCKETS (10000), BURST_BENCH_EXTRA
 * (900000), BURST_BENCH_INSTANCES (3; 0 skips (2)), BURST_BENCH_LEAD_MS
 * (30000), BENCH_DATABASE_URL (else an embedded Postgres in a temp folder).
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Sql } from '../../src/db/pool.js';
import { audit, expectedIterationId, type SeedMission } from '../reliability/support/ledger.js';
import { runBurstChild } from './burst-child.js';
import {
  envInt,
  freshDatabase,
  openClients,
  openFileLimit,
  percentiles,
  runIfEntry,
  sleep,
  spawnChild,
  tokensFor,
  until,
  withBenchPostgres,
  type ChildHandle,
  type Clients,
  type Percentiles,
} from './bench-support.js';

const SELF = fileURLToPath(import.meta.url);
const CHILD_ENV = 'BURST_BENCH_CHILD';
const MIB = 2 ** 20;
const round1 = (x: number) => Math.round(x * 10) / 10;
const heapOf = (m: Mem) => m.heapUsed + m.external;

export interface BurstOptions {
  due?: number;
  sockets?: number;
  extra?: number;
  instances?: number;
  leadMs?: number;
  databaseUrl?: string;
  progress?: (line: string) => void;
}

interface Mem {
  rss: number;
  heapUsed: number;
  external: number;
}

export interface BurstRun {
  instances: number;
  due: number;
  sockets: number;
  /** How long before the instant the projection held every rescheduled mission. */
  projectedAheadMs: number;
  nudge: Percentiles & { missed: number; duplicates: number };
  claimsGranted: number;
  claimsRefused: number;
  /** Instant → no occurrence of the instant left 'created' (and all of them exist). */
  outOfCreatedMs: number;
  /** Server-planner hand-overs: how many, and iteration ids handed over more than once / never. */
  planned: { handedOver: number; twice: number; never: number };
  ledger: { occurrences: number; lost: number; byStatus: Record<string, number> };
  peakRssMiB: number[];
}

export interface BurstBenchResult {
  cpus: number;
  memory: {
    missions: number;
    sockets: number;
    baseMiB: number;
    projectedMiB: number;
    connectedMiB: number;
    perMissionBytes: number;
    perSocketBytes: number;
    /** The same from V8's heap and external memory: RSS after a GC also moves with pages the allocator returns. */
    perMissionHeapBytes: number;
    perSocketHeapBytes: number;
  };
  single: BurstRun;
  multi?: BurstRun;
}

// ---------------------------------------------------------------- data, in SQL

/**
 * Writes `count` missions as mana-sync 'insert' rows, one statement per
 * 100,000: mission `m<i>` belongs to user `u<i mod users>` and falls due a
 * year from now (never during the bench).
 */
async function generateMissions(sql: Sql, count: number, users: number, say: (s: string) => void): Promise<void> {
  const STEP = 100_000;
  for (let from = 0; from < count; from += STEP) {
    const to = Math.min(count, from + STEP) - 1;
    await sql`
      INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, origin)
      SELECT 'ai', 'aiMissions', 'm' || i, 'u' || (i % ${users}), 'insert',
        jsonb_build_object('id', 'm' || i, 'title', 'Mission ' || i, 'objective', 'Keep the garden alive',
          'cadence', jsonb_build_object('kind', 'daily', 'atHour', 9, 'atMinute', 0), 'state', 'active',
          'iterations', '[]'::jsonb, 'nextRunAt', to_char((now() + interval '365 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
          'createdAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
        'bench', 'user'
      FROM generate_series(${from}::int, ${to}::int) AS i`;
    say(`  wrote missions ${from}…${to}`);
  }
}

/** Reschedules missions m0…m<due−1> to `at` with one 'update' row each. */
async function reschedule(sql: Sql, due: number, at: string): Promise<void> {
  await sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin)
    SELECT 'ai', 'aiMissions', 'm' || i, 'u' || i, 'update', jsonb_build_object('nextRunAt', ${at}::text),
      jsonb_build_object('nextRunAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')), 'bench', 'user'
    FROM generate_series(0, ${due - 1}::int) AS i`;
}

async function countScheduled(sql: Sql, at: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.mission_snapshots WHERE next_run_at = ${at}::text::timestamptz`;
  return row!.n;
}

async function countProjected(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.mission_snapshots WHERE present`;
  return row!.n;
}

// ---------------------------------------------------------------- one burst

interface BurstSetup {
  sql: Sql;
  secret: () => Promise<Uint8Array>;
  coordinators: ChildHandle[];
  due: number;
  sockets: number;
  leadMs: number;
  say: (s: string) => void;
  /** Called once the sockets are up, before the burst (memory figures). */
  connected?: () => Promise<void>;
}

async function burst(setup: BurstSetup): Promise<BurstRun> {
  const { sql, coordinators, due, sockets, say } = setup;
  const users = Array.from({ length: sockets }, (_, i) => `u${i}`);
  const tokens = await tokensFor(await setup.secret(), users);
  const arrivals = new Map<string, number[]>();
  let granted = 0;
  let refused = 0;
  const perInstance = Math.ceil(sockets / coordinators.length);
  const pendingClaims: { group: number; i: number; iterationId: string }[] = [];
  const claimSoon = (group: number, i: number, iterationId: string) => {
    if (pendingClaims.push({ group, i, iterationId }) > 1) return;
    setImmediate(() => {
      for (const c of pendingClaims.splice(0)) {
        void groups[c.group]?.sockets[c.i]?.send(JSON.stringify({ type: 'claim', iterationId: c.iterationId }));
      }
    });
  };
  let groups: Clients[] = [];
  groups = await Promise.all(
    coordinators.map((c, k) => {
      const mine = users.slice(k * perInstance, (k + 1) * perInstance);
      const clients = openClients(
        `ws://127.0.0.1:${c.port}/v1/ws`,
        mine.length,
        (i) => JSON.stringify({ type: 'auth', token: tokens[k * perInstance + i], deviceId: 'bench' }),
        (i, at, data) => {
          const f = JSON.parse(data) as { type: string; iterationId?: string; granted?: boolean };
          if (f.type === 'mission-due') {
            const seen = arrivals.get(f.iterationId!) ?? [];
            seen.push(at);
            arrivals.set(f.iterationId!, seen);
            // Claim on arrival, as a device does: the claims' writes are part of the burst.
            // This one process plays every device, so the claims of one event-loop turn go
            // out together after it: sending each before reading the next frame would
            // time the frames by this process's own claim sends.
            claimSoon(k, i, f.iterationId!);
          } else if (f.type === 'claim-result') {
            if (f.granted) granted++;
            else refused++;
          }
        },
      );
      return clients;
    }),
  );
  say(`${sockets} sockets authenticated on ${coordinators.length} coordinator(s)`);
  await setup.connected?.();

  const instantMs = Date.now() + setup.leadMs;
  const at = new Date(instantMs).toISOString();
  await reschedule(sql, due, at);
  let projectedAt = NaN;
  while (Date.now() < instantMs) {
    if ((await countScheduled(sql, at)) >= due) {
      projectedAt = Date.now();
      break;
    }
    await sleep(100);
  }
  const projectedAheadMs = instantMs - projectedAt;
  if (Number.isNaN(projectedAt)) {
    // Not a burst at one instant any more: the missions would trickle in as they are projected.
    throw new Error(`burst bench: the projection did not hold all ${due} rescheduled missions within ${setup.leadMs} ms; the machine is too busy, or raise BURST_BENCH_LEAD_MS`);
  }
  say(`all ${due} rescheduled missions projected ${projectedAheadMs} ms before the instant`);
  await Promise.all(coordinators.map((c) => c.request('peak-start')));

  // Instant → nothing of this instant left 'created'.
  let outOfCreatedMs = NaN;
  const end = instantMs + 60_000;
  await sleep(Math.max(0, instantMs - Date.now()));
  while (Date.now() < end) {
    const [row] = await sql<{ total: number; created: number }[]>`
      SELECT count(*)::int AS total, count(*) FILTER (WHERE status = 'created')::int AS created
      FROM mana_ai.occurrences WHERE due_at = ${at}::text::timestamptz`;
    if (row!.total >= due && row!.created === 0) {
      outOfCreatedMs = Date.now() - instantMs;
      break;
    }
    await sleep(100);
  }
  if (Number.isNaN(outOfCreatedMs)) throw new Error(`burst bench: occurrences of the instant were still 'created' (or missing) 60 s after it`);
  say(`every occurrence out of 'created' ${outOfCreatedMs} ms after the instant`);
  await until(() => arrivals.size >= sockets && granted + refused >= sockets, 30_000);
  await sleep(1000);
  const peaks = await Promise.all(coordinators.map((c) => c.request<number>('peak-stop')));

  const firsts = users.map((_, i) => arrivals.get(iterationOf(i, at))?.[0]).filter((t): t is number => t !== undefined);
  const nudge = { ...percentiles(firsts.map((t) => t - instantMs)), missed: sockets - firsts.length, duplicates: [...arrivals.values()].filter((a) => a.length > 1).length };
  say(`socket nudges after the instant: p50 ${nudge.p50} ms, p99 ${nudge.p99} ms, max ${nudge.max} ms, ${nudge.missed} missed, ${nudge.duplicates} twice; claims granted ${granted}, refused ${refused}`);

  const handed = (await Promise.all(coordinators.map((c) => c.request<string[]>('planned')))).flat();
  const counts = new Map<string, number>();
  for (const id of handed) counts.set(id, (counts.get(id) ?? 0) + 1);
  const others = Array.from({ length: due - sockets }, (_, j) => iterationOf(sockets + j, at));
  const planned = { handedOver: handed.length, twice: [...counts.values()].filter((n) => n > 1).length, never: others.filter((id) => !counts.has(id)).length };
  const seeded: SeedMission[] = Array.from({ length: due }, (_, i) => ({ userId: `u${i}`, missionId: `m${i}`, nextRunAt: at }));
  const a = await audit(sql, seeded);
  say(`server planner: ${planned.handedOver} handed over, ${planned.twice} twice, ${planned.never} never; ledger: ${a.occurrences} occurrences, ${a.lost.length} lost, ${JSON.stringify(a.byStatus)}`);
  await Promise.all(groups.map((g) => g.closeAll()));
  return {
    instances: coordinators.length,
    due,
    sockets,
    projectedAheadMs,
    nudge,
    claimsGranted: granted,
    claimsRefused: refused,
    outOfCreatedMs,
    planned,
    ledger: { occurrences: a.occurrences, lost: a.lost.length, byStatus: a.byStatus },
    peakRssMiB: peaks.map((p) => round1(p / MIB)),
  };
}

/** The iteration id of mission m<i> of user u<i> at `at` (the same derivation every party uses). */
const iterationOf = (i: number, at: string): string => expectedIterationId({ userId: `u${i}`, missionId: `m${i}`, nextRunAt: at });

// ---------------------------------------------------------------- scenarios

async function single(adminUrl: string, o: Required<Omit<BurstOptions, 'databaseUrl' | 'progress'>>, say: (s: string) => void) {
  const db = await freshDatabase(adminUrl, 'burst_bench_single');
  const c = await spawnChild('coordinator', { databaseUrl: db.url, instanceId: 'burst-1' }, SELF, CHILD_ENV);
  try {
    await sleep(1000);
    const base = await c.request<Mem>('mem');
    const missions = o.due + o.extra;
    const t0 = Date.now();
    await generateMissions(db.sql, missions, o.due, say);
    while ((await countProjected(db.sql)) < missions) await sleep(500);
    say(`${missions} missions written and projected in ${Date.now() - t0} ms`);
    await sleep(2000);
    const projected = await c.request<Mem>('mem');
    let connected: Mem = projected;
    const run = await burst({
      sql: db.sql,
      secret: db.secret,
      coordinators: [c],
      due: o.due,
      sockets: o.sockets,
      leadMs: o.leadMs,
      say,
      connected: async () => {
        await sleep(1000);
        connected = await c.request<Mem>('mem');
      },
    });
    const memory = {
      missions,
      sockets: o.sockets,
      baseMiB: round1(base.rss / MIB),
      projectedMiB: round1(projected.rss / MIB),
      connectedMiB: round1(connected.rss / MIB),
      perMissionBytes: Math.round((projected.rss - base.rss) / missions),
      perSocketBytes: Math.round((connected.rss - projected.rss) / o.sockets),
      perMissionHeapBytes: Math.round((heapOf(projected) - heapOf(base)) / missions),
      perSocketHeapBytes: Math.round((heapOf(connected) - heapOf(projected)) / o.sockets),
    };
    say(`memory: ${memory.baseMiB} MiB idle → ${memory.projectedMiB} MiB with ${missions} missions → ${memory.connectedMiB} MiB with ${o.sockets} sockets (${memory.perMissionBytes} B per mission, ${memory.perSocketBytes} B per socket; V8 heap and external: ${memory.perMissionHeapBytes} B per mission, ${memory.perSocketHeapBytes} B per socket)`);
    return { memory, run };
  } finally {
    await c.stop();
    await db.sql.end({ timeout: 5 });
  }
}

async function multi(adminUrl: string, o: Required<Omit<BurstOptions, 'databaseUrl' | 'progress'>>, say: (s: string) => void): Promise<BurstRun> {
  const db = await freshDatabase(adminUrl, 'burst_bench_multi');
  const coordinators: ChildHandle[] = [];
  try {
    for (let k = 1; k <= o.instances; k++) coordinators.push(await spawnChild('coordinator', { databaseUrl: db.url, instanceId: `burst-${k}` }, SELF, CHILD_ENV));
    await generateMissions(db.sql, o.due, o.due, say);
    while ((await countProjected(db.sql)) < o.due) await sleep(500);
    return await burst({ sql: db.sql, secret: db.secret, coordinators, due: o.due, sockets: o.sockets, leadMs: o.leadMs, say });
  } finally {
    await Promise.all(coordinators.map((c) => c.stop()));
    await db.sql.end({ timeout: 5 });
  }
}

export async function runBurstBench(opts: BurstOptions = {}): Promise<BurstBenchResult> {
  const say = opts.progress ?? ((s: string) => process.stderr.write(`${s}\n`));
  const o = {
    due: opts.due ?? 100_000,
    sockets: opts.sockets ?? 10_000,
    extra: opts.extra ?? 900_000,
    instances: opts.instances ?? 3,
    leadMs: opts.leadMs ?? 30_000,
  };
  if (openFileLimit() < o.sockets + 1000) throw new Error(`burst bench: ${o.sockets} sockets need about ${o.sockets + 1000} open files, the limit is ${openFileLimit()}; raise it (ulimit -n) or lower BURST_BENCH_SOCKETS`);
  return withBenchPostgres(opts.databaseUrl, 'burst-bench-pg-', async (adminUrl) => {
    const one = await single(adminUrl, o, say);
    const result: BurstBenchResult = { cpus: availableParallelism(), memory: one.memory, single: one.run };
    if (o.instances > 1) result.multi = await multi(adminUrl, { ...o, extra: 0 }, say);
    return result;
  });
}

/** For `npm run bench` (test/bench/run.ts): the defaults, or the BURST_BENCH_* variables; prints the result as JSON. */
export async function run(): Promise<void> {
  const result = await runBurstBench({
    due: envInt('BURST_BENCH_DUE'),
    sockets: envInt('BURST_BENCH_SOCKETS'),
    extra: envInt('BURST_BENCH_EXTRA'),
    instances: envInt('BURST_BENCH_INSTANCES'),
    leadMs: envInt('BURST_BENCH_LEAD_MS'),
    databaseUrl: process.env['BENCH_DATABASE_URL'],
    progress: (line) => process.stderr.write(`[burst-bench] ${line}\n`),
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

if (process.env[CHILD_ENV]) void runBurstChild();
else runIfEntry(import.meta.url, run);
