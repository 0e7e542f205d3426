/**
 * Late commits with real concurrent transactions. created_at is the writer's
 * transaction START, so a row can commit after rows with later created_at
 * values; the refresh must still apply it, however long the writer stayed
 * open, and the horizon must move on once nothing is open.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { TestDb } from '../support/db.js';
import { createProjectionDb } from './projection-db.js';
import { createProjection, type Projection } from '../../src/projection/refresh.js';
import { HORIZON_SAFETY_MS } from '../../src/projection/horizon.js';
import { createSql } from '../../src/db/pool.js';
import { insertRows, openWriter, readCursor, readLog, readRecord, resetProjection, rowMaker, viewsMatchOracle, type Writer } from './log-db.js';

let db: TestDb;
let projection: Projection;
const writers: Writer[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  db = await createProjectionDb();
});

afterAll(async () => {
  await db?.drop();
});

beforeEach(async () => {
  await resetProjection(db.sql);
  projection = createProjection({ sql: db.sql, log: pino({ level: 'silent' }), batchRows: 100, cacheRecords: 1000 });
});

afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.close()));
});

async function writer(): Promise<Writer> {
  const w = await openWriter(db.url);
  writers.push(w);
  return w;
}

/** Snapshots equal what the devices hold of everything committed. */
async function expectMatchesOracle(): Promise<void> {
  const { actual, expected } = await viewsMatchOracle(db.sql);
  expect(actual).toEqual(expected);
}

describe('late commits', () => {
  it('two concurrent writers: the earlier-started one commits after a refresh applied the later one, and is still applied', async () => {
    const t1 = await writer();
    const t2 = await writer();
    const t1Start = await t1.begin('u1');
    await sleep(30);
    const t2Start = await t2.begin('u1');
    expect(t2Start > t1Start).toBe(true);
    const r2 = await t2.insert({ recordId: 'm1', op: 'insert', data: { title: 'from T2', state: 'paused' } });
    await t2.commit();

    const first = await projection.refresh();
    expect(first.rowsApplied).toBe(1);
    expect(await readRecord(db.sql, 'u1', 'm1')).toEqual({ id: 'm1', title: 'from T2', state: 'paused' });

    const r1 = await t1.insert({ recordId: 'm1', op: 'update', data: { title: 'from T1', objective: 'late' } });
    await t1.commit();
    expect(r1.createdAt < r2.createdAt).toBe(true);
    expect(r1.createdAt).toBe(t1Start);

    const second = await projection.refresh();
    expect(second.rowsApplied).toBe(1);
    // T1's title is older (its created_at) and loses; its new field is applied.
    expect(await readRecord(db.sql, 'u1', 'm1')).toEqual({ id: 'm1', title: 'from T2', state: 'paused', objective: 'late' });
    await expectMatchesOracle();
    // Nothing is read twice.
    expect((await projection.refresh()).rowsApplied).toBe(0);
  });

  it('a writer held open longer than any fixed window (several refreshes, > HORIZON_SAFETY_MS) is still applied', async () => {
    const long = await writer();
    const start = await long.begin('u2');
    const other = await writer();
    const deadline = Date.now() + HORIZON_SAFETY_MS * 2 + 500;
    let refreshes = 0;
    let n = 0;
    // Other writers keep committing while the long one stays open.
    while (Date.now() < deadline) {
      await other.begin('u2');
      await other.insert({ recordId: `m${n % 3}`, op: 'update', data: { counter: n, title: `t${n}` } });
      await other.commit();
      n++;
      const stats = await projection.refresh();
      expect(stats.ran).toBe(true);
      expect(stats.stalled).toBe(false);
      // The horizon never passes the start of the open transaction.
      expect(stats.horizon <= start).toBe(true);
      refreshes++;
      await sleep(150);
    }
    expect(refreshes).toBeGreaterThanOrEqual(5);

    const row = await long.insert({ recordId: 'm0', op: 'update', data: { objective: 'written by the long transaction' } });
    expect(row.createdAt).toBe(start);
    await long.commit();
    const stats = await projection.refresh();
    expect(stats.rowsApplied).toBe(1);
    expect(await readRecord(db.sql, 'u2', 'm0')).toMatchObject({ objective: 'written by the long transaction' });
    await expectMatchesOracle();
  });

  it('the horizon advances and the applied set stays small when no transaction is open', async () => {
    const w = await writer();
    for (let i = 0; i < 5; i++) {
      await w.begin('u3');
      await w.insert({ recordId: `m${i}`, op: 'insert', data: { title: `m${i}`, state: 'active' } });
      await w.commit();
    }
    const first = await projection.refresh();
    expect(first.rowsApplied).toBe(5);
    const c1 = (await readCursor(db.sql))!;
    const log = await readLog(db.sql);
    const newest = log.map((r) => r.createdAt).sort().at(-1)!;

    await sleep(HORIZON_SAFETY_MS + 300);
    const second = await projection.refresh();
    expect(second.rowsApplied).toBe(0);
    const c2 = (await readCursor(db.sql))!;
    expect(c2.horizon > c1.horizon).toBe(true);
    // Every row is now below the horizon: nothing left to track by id.
    expect(c2.horizon > newest).toBe(true);
    expect(c2.applied).toEqual([]);
    await expectMatchesOracle();

    // And it keeps moving with time.
    await sleep(200);
    await projection.refresh();
    expect((await readCursor(db.sql))!.horizon > c2.horizon).toBe(true);
  });

  it('a row just below the stored horizon is not read again (the horizon keeps its microseconds)', async () => {
    const hold = await writer();
    await hold.begin('u4');
    const [x] = await db.sql<{ horizon: string }[]>`
      SELECT to_char((xact_start - make_interval(secs => ${HORIZON_SAFETY_MS / 1000})) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS horizon
      FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
      ORDER BY xact_start LIMIT 1`;
    const horizon = x!.horizon;
    // Same millisecond as the horizon, but before it (exactly the millisecond start when the horizon has sub-ms digits).
    const micros = horizon.slice(23, 26);
    const below = micros === '000' ? `${horizon.slice(0, 22)}${String(Number(horizon[22]) - 1)}999Z` : `${horizon.slice(0, 23)}000Z`;
    expect(below < horizon).toBe(true);
    await insertRows(db.sql, [rowMaker(() => ({}))({ id: '00000000-0000-4000-8000-00000000b10e', userId: 'u4', op: 'insert', data: { title: 'x' }, createdAt: below })]);
    const first = await projection.refresh();
    expect(first.rowsApplied).toBe(1);
    expect(first.horizon).toBe(horizon);
    expect((await readCursor(db.sql))!.applied).toEqual([]);
    const second = await projection.refresh();
    expect(second.rowsApplied).toBe(0);
  });

  it('a late DELETE (created_at before an applied update of the same record) triggers a rebuild and matches the replay', async () => {
    const setup = await writer();
    await setup.begin('u5');
    await setup.insert({ recordId: 'm1', op: 'insert', data: { title: 'original', state: 'active', nextRunAt: '2026-01-01T00:00:00Z' } });
    await setup.commit();
    expect((await projection.refresh()).rowsApplied).toBe(1);

    const deleter = await writer();
    const updater = await writer();
    const delStart = await deleter.begin('u5');
    await sleep(30);
    await updater.begin('u5');
    const upd = await updater.insert({ recordId: 'm1', op: 'update', data: { title: 're-created after the delete' } });
    await updater.commit();
    expect((await projection.refresh()).rowsApplied).toBe(1);
    expect(await readRecord(db.sql, 'u5', 'm1')).toMatchObject({ title: 're-created after the delete', state: 'active' });

    const del = await deleter.insert({ recordId: 'm1', op: 'delete', data: null });
    await deleter.commit();
    expect(del.createdAt).toBe(delStart);
    expect(del.createdAt < upd.createdAt).toBe(true);

    const stats = await projection.refresh();
    expect(stats.rowsApplied).toBe(1);
    expect(stats.rebuilds).toBe(1);
    // Replay order: insert, delete, update → the update re-creates from its own data alone.
    expect(await readRecord(db.sql, 'u5', 'm1')).toEqual({ id: 'm1', title: 're-created after the delete' });
    await expectMatchesOracle();
    const [snap] = await db.sql<{ state: string | null; nextRunAt: Date | null }[]>`
      SELECT state, next_run_at AS "nextRunAt" FROM mana_ai.mission_snapshots WHERE user_id = 'u5' AND mission_id = 'm1'`;
    expect(snap).toEqual({ state: null, nextRunAt: null });
  });

  it('a role that cannot see other transactions stalls the horizon and says so once, but never skips a row', async () => {
    const role = `mana_ai_blind_${Date.now().toString(36)}`;
    await db.sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'blind' NOSUPERUSER BYPASSRLS`);
    try {
      await db.sql.unsafe(`GRANT SELECT ON sync_changes TO ${role}; GRANT USAGE ON SCHEMA mana_ai TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mana_ai TO ${role}`);
      const url = new URL(db.url);
      url.username = role;
      url.password = 'blind';
      const blindSql = createSql(url.toString(), { max: 2 });
      const warnings: string[] = [];
      const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
      try {
        const blind = createProjection({ sql: blindSql, log, batchRows: 100, cacheRecords: 1000 });
        const w = await writer();
        await w.begin('u7');
        await w.insert({ recordId: 'm1', op: 'insert', data: { title: 'seen anyway' } });
        await w.commit();
        const first = await blind.refresh();
        expect(first).toMatchObject({ ran: true, stalled: true, rowsApplied: 1 });
        await sleep(HORIZON_SAFETY_MS + 200);
        await w.begin('u7');
        await w.insert({ recordId: 'm1', op: 'update', data: { state: 'active' } });
        await w.commit();
        const second = await blind.refresh();
        expect(second).toMatchObject({ stalled: true, rowsApplied: 1 });
        // It does not advance on a guess: rows stay tracked by id instead.
        expect(second.horizon).toBe(first.horizon);
        expect((await readCursor(db.sql))!.applied).toHaveLength(2);
        await expectMatchesOracle();
        expect(warnings.filter((l) => l.includes('horizon stalled'))).toHaveLength(1);
      } finally {
        await blindSql.end({ timeout: 5 });
      }
    } finally {
      await db.sql.unsafe(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('a late DELETE with no later rows just deletes (no rebuild)', async () => {
    const a = await writer();
    const b = await writer();
    await a.begin('u6');
    await b.begin('u6');
    await b.insert({ recordId: 'm1', op: 'insert', data: { title: 'x' } });
    await b.commit();
    await projection.refresh();
    await a.insert({ recordId: 'm2', op: 'delete', data: null });
    await a.commit();
    const stats = await projection.refresh();
    expect(stats.rowsApplied).toBe(1);
    expect(stats.rebuilds).toBe(0);
    await expectMatchesOracle();
  });
});
