/**
 * The top of the hour against a real Postgres: a pass whose due batch was
 * full runs the next one at once (not a tick later), batches never overlap
 * or skip a mission, and the look-ahead readies only missions of users with
 * a socket somewhere, so deviceless missions cannot crowd them out.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createTestDb, type TestDb } from '../support/db.js';
import { inMs } from '../support/coordinator.js';
import { insertPlannable } from '../faults/support.js';
import { createProjection } from '../../src/projection/refresh.js';
import { createMetrics } from '../../src/metrics.js';
import { createPass } from '../../src/schedule/pass.js';
import { createLifecycle } from '../../src/schedule/lifecycle.js';
import { scanDue } from '../../src/schedule/due.js';
import type { DueMission } from '../../src/schedule/due.js';
import { reason } from '../../src/schedule/reasons.js';

const log = pino({ level: 'silent' });
let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

it('a full due batch makes the next pass run at once, without the sweep; every due mission is dispatched exactly once', async () => {
  await db.sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.agent_snapshots, mana_ai.record_spaces, mana_ai.projection_cursor, mana_ai.occurrences`;
  const dueAt = inMs(-1000);
  await insertPlannable(db.sql, Array.from({ length: 7 }, (_, i) => ({ userId: `u${i % 3}`, missionId: `m${i}`, nextRunAt: dueAt })));
  const projection = createProjection({ sql: db.sql, log, batchRows: 1000, cacheRecords: 100 });
  const lifecycle = createLifecycle({ sql: db.sql, log, registry: new Registry(), instanceId: 'burst-test', leaseMs: 60_000, fallback: { enabled: true, plan() {} } });
  const batches: DueMission[][] = [];
  const sweeps: boolean[] = [];
  const runPass = createPass({
    sql: db.sql,
    projection,
    metrics: createMetrics(),
    log,
    dueLimit: 3,
    dispatch: async (due) => {
      batches.push(due);
      await lifecycle.createDue(due, () => 'fallback', 60_000, () => undefined);
    },
    sweep: async (info) => {
      sweeps.push(info.projectionChanged);
    },
  });
  const first = await runPass();
  expect(first.stats.missionsDue).toBe(3);
  expect(first.nextDueAt!.getTime()).toBeLessThanOrEqual(Date.now());
  expect((await runPass()).stats.missionsDue).toBe(3);
  const last = await runPass();
  expect(last.stats.missionsDue).toBe(1);
  expect(last.nextDueAt).toBeNull();
  // The upkeep runs on the first pass and once the backlog is drained, not on every pass between.
  expect(sweeps).toEqual([true, false]);
  const ids = batches.flat().map((d) => d.missionId);
  expect(ids.sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  // A user's missions due at one instant stay together within a batch (one push names them all).
  expect(batches[0]!.map((d) => d.userId)).toEqual(['u0', 'u0', 'u0']);
});

it('looks ahead only at missions of users with a presence row', async () => {
  await db.sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.agent_snapshots, mana_ai.record_spaces, mana_ai.projection_cursor, mana_ai.occurrences, mana_ai.presence`;
  const soon = inMs(2000);
  await insertPlannable(db.sql, [
    { userId: 'with-socket', missionId: 'a', nextRunAt: soon },
    { userId: 'no-device', missionId: 'b', nextRunAt: soon },
  ]);
  await createProjection({ sql: db.sql, log, batchRows: 1000, cacheRecords: 100 }).refresh();
  await db.sql`INSERT INTO mana_ai.presence (instance_id, conn_id, user_id, device_id) VALUES ('i1', 'c1', 'with-socket', 'laptop')`;
  const { upcoming } = await scanDue(db.sql, { limit: 10, upcoming: { withinMs: 5000 } });
  expect(upcoming.map((d) => d.userId)).toEqual(['with-socket']);
});

it('with server planning off, a batch falls back to waiting in one statement, each with its own backoff', async () => {
  await db.sql`TRUNCATE mana_ai.occurrences`;
  const lifecycle = createLifecycle({ sql: db.sql, log, registry: new Registry(), instanceId: 'burst-test', leaseMs: 60_000, fallback: { enabled: false, plan() {} } });
  const dueAt = new Date(Date.now() - 1000).toISOString().replace('Z', '000Z');
  const due = Array.from({ length: 50 }, (_, i) => ({ userId: `w${i}`, missionId: 'm', nextRunAt: dueAt }));
  const { rest } = await lifecycle.createDue(due, () => 'push', 60_000, () => undefined);
  expect(rest).toHaveLength(50);
  rest[0]!.routeAttempts = 2; // routed again twice: waits longer, 1 min doubling
  await lifecycle.toFallback(rest, ['created'], reason('no-device', 'no reachable device'));
  const rows = await db.sql<{ status: string; lastError: string; waitS: number; id: string }[]>`
    SELECT status, last_error AS "lastError", round(extract(epoch FROM next_attempt_at - now()))::int AS "waitS", iteration_id::text AS id
    FROM mana_ai.occurrences`;
  expect(rows).toHaveLength(50);
  for (const r of rows) {
    expect(r.status).toBe('waiting');
    expect(r.lastError).toMatch(/server planning is off/);
    expect(r.waitS).toBeCloseTo(r.id === rest[0]!.iterationId ? 240 : 60, -1);
  }
  // Routed at creation: a mission of a user with no device starts waiting, written once.
  const later = due.map((d) => ({ ...d, missionId: 'm2' }));
  const direct = await lifecycle.createDue(later, () => 'fallback', 60_000, () => undefined);
  expect(direct.rest).toEqual([]);
  const [row] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM mana_ai.occurrences
    WHERE mission_id = 'm2' AND status = 'waiting' AND last_error ~ 'server planning is off'
      AND round(extract(epoch FROM next_attempt_at - now())) BETWEEN 55 AND 60`;
  expect(row!.n).toBe(50);
});

it('a pass scans only past what the previous one saw, unless missions changed; a full scan still comes every fullScanMs', async () => {
  await db.sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.agent_snapshots, mana_ai.record_spaces, mana_ai.projection_cursor, mana_ai.occurrences`;
  const projection = createProjection({ sql: db.sql, log, batchRows: 1000, cacheRecords: 100 });
  const lifecycle = createLifecycle({ sql: db.sql, log, registry: new Registry(), instanceId: 'window-test', leaseMs: 60_000, fallback: { enabled: true, plan() {} } });
  const dispatched: string[] = [];
  const runPass = createPass({
    sql: db.sql,
    projection,
    metrics: createMetrics(),
    log,
    fullScanMs: 1500,
    dispatch: async (due) => {
      dispatched.push(...due.map((d) => d.missionId));
      await lifecycle.createDue(due, () => 'fallback', 60_000, () => undefined);
    },
    sweep: async () => undefined,
  });
  await insertPlannable(db.sql, [{ userId: 'w', missionId: 'through-the-log', nextRunAt: inMs(-60_000) }]);
  await runPass();
  expect(dispatched).toEqual(['through-the-log']);
  // A mission that became due at an instant the last scan already passed, with no
  // projection change this instance saw (another instance projected it, then crashed):
  await db.sql`
    INSERT INTO mana_ai.mission_snapshots (user_id, mission_id, fields, versions, present, soft_deleted, state, next_run_at, listed, author, agent_status)
    VALUES ('w', 'behind-the-scan', '{}', '{}', true, false, 'active', now() - interval '1 minute', true, 'w', 'active')`;
  await runPass();
  expect(dispatched).toEqual(['through-the-log']);
  // A mission changed through the log makes the next scan a full one.
  await insertPlannable(db.sql, [{ userId: 'w', missionId: 'changed', nextRunAt: inMs(-30_000) }]);
  await runPass();
  expect(dispatched.sort()).toEqual(['behind-the-scan', 'changed', 'through-the-log']);
  // And without any change, the periodic full scan finds what only it can.
  await db.sql`
    INSERT INTO mana_ai.mission_snapshots (user_id, mission_id, fields, versions, present, soft_deleted, state, next_run_at, listed, author, agent_status)
    VALUES ('w', 'found-later', '{}', '{}', true, false, 'active', now() - interval '1 minute', true, 'w', 'active')`;
  await runPass();
  expect(dispatched).not.toContain('found-later');
  await new Promise((r) => setTimeout(r, 1600));
  await runPass();
  expect(dispatched).toContain('found-later');
});

it('a refresh names the missions its rows changed, so settling reads only their occurrences', async () => {
  await db.sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.agent_snapshots, mana_ai.record_spaces, mana_ai.projection_cursor, mana_ai.occurrences`;
  const projection = createProjection({ sql: db.sql, log, batchRows: 1000, cacheRecords: 100 });
  await insertPlannable(db.sql, [
    { userId: 'r', missionId: 'r1', nextRunAt: inMs(60_000) },
    { userId: 'r', missionId: 'r2', nextRunAt: inMs(60_000) },
  ]);
  const first = await projection.refresh();
  expect(first.changed?.map((m) => `${m.userId}/${m.missionId}`).sort()).toEqual(['r/r1', 'r/r2']);
  expect((await projection.refresh()).changed).toEqual([]);
});
