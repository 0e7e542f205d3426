/**
 * The due scan (semantics through the real projection, and the partial
 * index in the real plans) and a real coordinator waking at the earliest
 * nextRunAt (the scheduler loop alone: scheduler.test.ts).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import postgres from 'postgres';
import { pino } from 'pino';
import { createTestDb, type TestDb } from '../support/db.js';
import { createFallbackSpy } from '../support/coordinator.js';
import { createProjection } from '../../src/projection/refresh.js';
import { findDueMissions, nextDueAt, scanDue } from '../../src/schedule/due.js';
import { loadConfig } from '../../src/config.js';
import { startCoordinator } from '../../src/coordinator.js';
import type { LogRow } from '../projection/oracle.js';
import { insertRows, resetProjection, rowMaker } from '../projection/log-db.js';

const silent = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

let n = 0;
/** A row written now; an update stamps each of its fields now, as a device does, unless given its metadata. */
function row(userId: string, recordId: string, op: string, data: unknown, fieldMeta?: unknown): LogRow {
  n++;
  const at = new Date(Date.now() + n).toISOString();
  const stamps = op === 'update' && data && typeof data === 'object' ? Object.fromEntries(Object.keys(data).map((k) => [k, at])) : {};
  return makeRow({ id: `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`, userId, recordId, op, data, fieldMeta: fieldMeta ?? stamps, createdAt: at });
}
const makeRow = rowMaker(() => ({}));

async function project(rows: LogRow[]): Promise<void> {
  await resetProjection(db.sql);
  await insertRows(db.sql, rows);
  const stats = await createProjection({ sql: db.sql, log: silent, batchRows: 1000, cacheRecords: 1000 }).refresh();
  expect(stats.rowsApplied).toBe(rows.length);
}

describe('due scan semantics', () => {
  const past = (min: number) => new Date(Date.now() - min * 60_000).toISOString();
  const future = (min: number) => new Date(Date.now() + min * 60_000).toISOString();
  // createdAt: the runner lists missions through that index; the insert's fields are stamped with it.
  const active = (nextRunAt: unknown, extra: Record<string, unknown> = {}) => ({ title: 't', state: 'active', nextRunAt, createdAt: past(600), ...extra });

  beforeEach(async () => {
    const offsetSpelled = new Date(Date.now() - 50 * 60_000 + 2 * 3600_000).toISOString().slice(0, 19) + '+02:00';
    await project([
      row('u1', 'due-oldest', 'insert', active(past(120))),
      row('u1', 'due', 'insert', active(past(5))),
      row('u2', 'due-other-user', 'insert', active(past(30))),
      row('u1', 'due-deletedAt-empty', 'insert', active(past(1), { deletedAt: '' })),
      row('u1', 'due-deletedAt-null', 'insert', active(past(1), { deletedAt: null })),
      row('u1', 'future', 'insert', active(future(10))),
      row('u1', 'future-later', 'insert', active(future(90))),
      row('u1', 'paused', 'insert', { ...active(past(5)), state: 'paused' }),
      row('u1', 'done', 'insert', { ...active(past(5)), state: 'done' }),
      row('u1', 'archived', 'insert', { ...active(past(5)), state: 'archived' }),
      row('u1', 'state-case', 'insert', { ...active(past(5)), state: 'Active' }),
      row('u1', 'state-not-string', 'insert', { ...active(past(5)), state: ['active'] }),
      row('u1', 'no-next-run', 'insert', { title: 't', state: 'active' }),
      row('u1', 'next-run-null', 'insert', active(null)),
      row('u1', 'next-run-garbage', 'insert', active('tomorrow')),
      row('u1', 'soft-deleted', 'insert', active(past(5), { deletedAt: past(1) })),
      row('u1', 'soft-deleted-later', 'insert', active(past(5))),
      row('u1', 'soft-deleted-later', 'update', { deletedAt: past(0) }),
      row('u1', 'deleted', 'insert', active(past(5))),
      row('u1', 'deleted', 'delete', null),
      row('u1', 'paused-later', 'insert', active(past(5))),
      row('u1', 'paused-later', 'update', { state: 'paused' }),
      row('u1', 'recreated', 'insert', { ...active(past(5)), state: 'paused' }),
      row('u1', 'recreated', 'delete', null),
      row('u1', 'recreated', 'update', active(past(3))),
      row('u1', 'resumed', 'insert', { ...active(past(4)), state: 'paused' }),
      row('u1', 'resumed', 'update', { state: 'active' }),
      // An older field stamp loses: the mission stays paused (the creating device's clock ran an hour ahead).
      row('u1', 'stale-resume', 'insert', { ...active(past(4)), state: 'paused', updatedAt: future(60) }),
      row('u1', 'stale-resume', 'update', { state: 'active' }),
      // Stamps compare as strings: the same instant spelled with an offset sorts after now's toISOString().
      row('u1', 'offset-spelling-is-later', 'insert', active(offsetSpelled)),
      // The runner lists missions through Dexie's createdAt index: none, or one it cannot index, is never listed.
      row('u1', 'no-createdAt', 'insert', { title: 't', state: 'active', nextRunAt: past(5) }),
      row('u1', 'createdAt-object', 'insert', active(past(5), { createdAt: { at: past(600) } })),
      // Another user's mission: planned for its author only.
      row('u1', 'authored-elsewhere', 'insert', active(past(5), { authorId: 'u9' })),
    ]);
  });

  it('finds exactly the missions the runner would run (listed, active, not deleted, nextRunAt <= now as strings, authored by the user), oldest first', async () => {
    const due = await findDueMissions(db.sql, { limit: 100 });
    expect(due.map((d) => d.missionId)).toEqual([
      'due-oldest',
      'due-other-user',
      'due',
      'resumed',
      'recreated',
      // Same nextRunAt (past(1)) for these two: order between them is not specified.
      ...due.slice(5).map((d) => d.missionId),
    ]);
    expect(new Set(due.slice(5).map((d) => d.missionId))).toEqual(new Set(['due-deletedAt-empty', 'due-deletedAt-null']));
    expect(due).toHaveLength(7);
    for (const d of due) {
      expect(Object.keys(d).sort()).toEqual(['missionId', 'nextRunAt', 'userId']);
      expect(d.nextRunAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
      expect(Date.parse(d.nextRunAt)).toBeLessThanOrEqual(Date.now());
    }
    expect(due.find((d) => d.missionId === 'due-other-user')?.userId).toBe('u2');
  });

  it('respects the limit', async () => {
    expect((await findDueMissions(db.sql, { limit: 2 })).map((d) => d.missionId)).toEqual(['due-oldest', 'due-other-user']);
  });

  it('nextDueAt is the earliest future nextRunAt of a due-able mission', async () => {
    const at = await nextDueAt(db.sql);
    expect(at).toBeInstanceOf(Date);
    expect(Math.abs(at!.getTime() - (Date.now() + 10 * 60_000))).toBeLessThan(60_000);
  });

  it('skips missions whose occurrence for this nextRunAt already exists (unhandledOnly)', async () => {
    await db.sql`
      INSERT INTO mana_ai.occurrences (iteration_id, user_id, mission_id, due_at)
      SELECT gen_random_uuid(), user_id, mission_id, next_run_at FROM mana_ai.mission_snapshots WHERE mission_id = 'due'`;
    const all = await findDueMissions(db.sql, { limit: 100 });
    const unhandled = await findDueMissions(db.sql, { limit: 100, unhandledOnly: true });
    expect(all.map((d) => d.missionId)).toContain('due');
    expect(unhandled.map((d) => d.missionId)).not.toContain('due');
    expect(unhandled).toHaveLength(all.length - 1);
    await db.sql`DELETE FROM mana_ai.occurrences`;
  });
});

describe('the due queries use the partial index mission_snapshots_due_idx', () => {
  let captured: { query: string; params: unknown[] }[] = [];
  let spy: postgres.Sql;

  beforeAll(async () => {
    await resetProjection(db.sql);
    // 20k snapshots: a fifth active, some soft-deleted or deleted, nextRunAt
    // spread over ±3 weeks. The planner decides on statistics (ANALYZE), with
    // every plan type allowed.
    await db.sql`
      INSERT INTO mana_ai.mission_snapshots (user_id, mission_id, fields, versions, present, soft_deleted, state, next_run_at, listed, author, agent_status)
      SELECT 'user' || (g % 2000), 'mission' || g, '{}', '{}', g % 17 <> 0, g % 13 = 0,
             (ARRAY['active', 'paused', 'done', 'archived', 'paused'])[g % 5 + 1],
             CASE WHEN g % 11 = 0 THEN NULL ELSE now() + ((g % 1000) - 500) * interval '1 hour' END,
             g % 19 <> 0, CASE WHEN g % 23 = 0 THEN 'someone else' ELSE 'user' || (g % 2000) END,
             (ARRAY['active', 'active', 'active', 'paused', NULL])[g % 7 % 5 + 1]
      FROM generate_series(1, 20000) g`;
    await db.sql`ANALYZE mana_ai.mission_snapshots`;
    spy = postgres(db.url, {
      max: 1,
      onnotice: () => {},
      debug: (_conn, query, params) => captured.push({ query, params: params as unknown[] }),
    });
  });

  afterAll(async () => {
    await spy?.end({ timeout: 5 });
  });

  /** Runs fn against the spying pool and returns the one query it sent. */
  async function queryOf(fn: (sql: postgres.Sql) => Promise<unknown>): Promise<{ query: string; params: unknown[] }> {
    captured = [];
    await fn(spy);
    // postgres.js reports a new statement twice (describe, then execute), and
    // looks up array types on its first connection.
    const ours = captured.filter((c) => !c.query.includes('pg_catalog.pg_type'));
    const texts = new Set(ours.map((c) => c.query));
    expect(texts.size, [...texts].join("\n---\n")).toBe(1);
    return ours.at(-1)!;
  }

  /** Every node of the plan; a bitmap index scan carries the relation of the heap scan it feeds. */
  function scansOf(plan: unknown): { node: string; relation?: string; index?: string }[] {
    const out: { node: string; relation?: string; index?: string }[] = [];
    const walk = (p: Record<string, unknown>, heap?: string) => {
      const node = String(p['Node Type']);
      const relation = (p['Relation Name'] as string | undefined) ?? (node === 'Bitmap Index Scan' ? heap : undefined);
      out.push({ node, relation, index: p['Index Name'] as string | undefined });
      for (const child of (p['Plans'] as Record<string, unknown>[] | undefined) ?? []) walk(child, node === 'Bitmap Heap Scan' ? relation : heap);
    };
    walk((plan as [{ Plan: Record<string, unknown> }])[0].Plan);
    return out;
  }

  /**
   * The plan for q's values, or its generic plan (the one a prepared
   * statement may settle on): EXPLAIN (GENERIC_PLAN) from PostgreSQL 16, a
   * prepared statement under force_generic_plan before that.
   */
  async function planOf(q: { query: string; params: unknown[] }, generic: boolean): Promise<unknown> {
    if (!generic) return ((await db.sql.unsafe(`EXPLAIN (FORMAT JSON) ${q.query}`, q.params as never[]))[0] as Record<string, unknown>)['QUERY PLAN'];
    const [{ v }] = (await db.sql`SELECT current_setting('server_version_num')::int AS v`) as unknown as [{ v: number }];
    if (v >= 160000) return ((await db.sql.unsafe(`EXPLAIN (FORMAT JSON, GENERIC_PLAN) ${q.query}`))[0] as Record<string, unknown>)['QUERY PLAN'];
    const conn = await db.sql.reserve();
    try {
      await conn.unsafe(`SET plan_cache_mode = force_generic_plan`);
      await conn.unsafe(`PREPARE due_generic AS ${q.query}`);
      const args = q.params.map((p) => (p === null ? 'NULL' : `'${String(Array.isArray(p) ? `{${p.join(',')}}` : p).replace(/'/g, "''")}'`));
      const [row] = await conn.unsafe(`EXPLAIN (FORMAT JSON) EXECUTE due_generic${args.length ? `(${args.join(', ')})` : ''}`);
      return (row as Record<string, unknown>)['QUERY PLAN'];
    } finally {
      await conn.unsafe('DEALLOCATE due_generic; RESET plan_cache_mode').catch(() => undefined);
      conn.release();
    }
  }

  async function expectIndexUsed(q: { query: string; params: unknown[] }): Promise<void> {
    for (const explain of ['EXPLAIN (FORMAT JSON) ', 'EXPLAIN (FORMAT JSON, GENERIC_PLAN) ']) {
      const scans = scansOf(await planOf(q, explain.includes('GENERIC')));
      const why = `${explain}: ${JSON.stringify(scans)}`;
      const onSnapshots = scans.filter((s) => s.relation === 'mission_snapshots');
      expect(onSnapshots.length, why).toBeGreaterThan(0);
      // An index (only) scan names the index itself; a bitmap heap scan has it on its child.
      for (const scan of onSnapshots) {
        expect(scan.node, why).not.toBe('Seq Scan');
        if (scan.node !== 'Bitmap Heap Scan') expect(scan.index, why).toBe('mission_snapshots_due_idx');
      }
      for (const bitmap of onSnapshots.filter((s) => s.node === 'Bitmap Index Scan')) expect(bitmap.index, why).toBe('mission_snapshots_due_idx');
    }
  }

  it('findDueMissions', async () => {
    const due = await findDueMissions(db.sql, { limit: 20_000 });
    expect(due.length).toBeGreaterThan(500);
    await expectIndexUsed(await queryOf((sql) => findDueMissions(sql, { limit: 20_000 })));
  });

  it('findDueMissions with unhandledOnly (as the pass runs it)', async () => {
    await expectIndexUsed(await queryOf((sql) => findDueMissions(sql, { limit: 20_000, unhandledOnly: true })));
  });

  it('nextDueAt', async () => {
    await expectIndexUsed(await queryOf((sql) => nextDueAt(sql)));
  });

  it('scanDue with the look-ahead (as the pass runs it)', async () => {
    await expectIndexUsed(await queryOf((sql) => scanDue(sql, { limit: 20_000, unhandledOnly: true, upcoming: { withinMs: 2000, after: new Date().toISOString() } })));
  });
});

describe('scheduler with a real coordinator', () => {
  it('a real coordinator with TICK_INTERVAL_MS=60000 dispatches a mission due in 300 ms within about a second', async () => {
    await resetProjection(db.sql);
    await db.sql`TRUNCATE mana_ai.occurrences`;
    const config = loadConfig({ NODE_ENV: 'test', PORT: '0', HOST: '127.0.0.1', DEV_MODE: '1', SYNC_DATABASE_URL: db.url, TICK_INTERVAL_MS: '60000', TICK_ENABLED: 'true' });
    const spy = createFallbackSpy();
    const coordinator = await startCoordinator({ config, sql: db.sql, log: silent, fallback: spy });
    try {
      await sleep(200); // the first pass at start has run and armed the 60 s timer
      const t0 = Date.now();
      const dueAt = new Date(t0 + 300);
      await insertRows(db.sql, [row('u-wake', 'm-wake', 'insert', { title: 'wake', state: 'active', cadence: { kind: 'interval', everyMinutes: 60 }, nextRunAt: dueAt.toISOString(), createdAt: new Date(t0).toISOString() })]);
      // A pass (as a write through the dev endpoint or /internal/tick would run) projects it; nothing is due yet.
      const stats = await coordinator.scheduler.runOnce();
      expect(stats.rowsApplied).toBe(1);
      expect(stats.missionsDue).toBe(0);
      expect(spy.calls).toHaveLength(0);
      expect(Date.parse(coordinator.scheduler.state().nextWakeAt!)).toBeLessThanOrEqual(dueAt.getTime() + 5);

      while (spy.calls.length === 0 && Date.now() - t0 < 3000) await sleep(20);
      const elapsed = Date.now() - t0;
      expect(spy.calls).toHaveLength(1);
      expect(spy.calls[0]).toMatchObject({ userId: 'u-wake', missionId: 'm-wake' });
      expect(elapsed).toBeGreaterThanOrEqual(295);
      expect(elapsed).toBeLessThan(1500);
    } finally {
      await coordinator.stop();
    }
  });
});
