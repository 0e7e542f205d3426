/**
 * A pass and its sweep when part of them fails or is held back, against a
 * real Postgres: a pass that failed after its refresh applied rows does not
 * keep its scan cursor (a mission those rows made due is found by the next
 * pass and settled as targeted), and settling owed by an overflowing list of
 * changed missions is never dropped while the full settle is held back.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createTestDb, type TestDb } from '../support/db.js';
import { inMs, updateMission } from '../support/coordinator.js';
import { insertPlannable } from '../faults/support.js';
import { createProjection } from '../../src/projection/refresh.js';
import { createMetrics } from '../../src/metrics.js';
import { createPass, type SweepInfo } from '../../src/schedule/pass.js';
import { createLifecycle } from '../../src/schedule/lifecycle.js';
import type { DueMission } from '../../src/schedule/due.js';

const log = pino({ level: 'silent' });
let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

beforeEach(async () => {
  await db.sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.projection_cursor, mana_ai.occurrences`;
});

afterAll(async () => {
  await db?.drop();
});

function lifecycle() {
  return createLifecycle({ sql: db.sql, log, registry: new Registry(), instanceId: 'pass-faults', leaseMs: 60_000, fallback: { enabled: true, plan() {} } });
}

describe('the incremental due scan', () => {
  it('a pass that failed after its refresh applied rows drops its cursor: the next pass finds the mission those rows made due and settles it as targeted', async () => {
    await insertPlannable(db.sql, [{ userId: 'u1', missionId: 'a', nextRunAt: inMs(-60_000) }]);
    const projection = createProjection({ sql: db.sql, log, batchRows: 1000, cacheRecords: 100 });
    const life = lifecycle();
    const dispatched: DueMission[] = [];
    const sweeps: SweepInfo[] = [];
    const runPass = createPass({
      sql: db.sql,
      projection,
      metrics: createMetrics(),
      log,
      // No periodic full scan during the test: only the cursor rule decides.
      fullScanMs: 3_600_000,
      dispatch: async (due) => {
        dispatched.push(...due);
        await life.createDue(due, () => 'fallback', 60_000, () => undefined);
      },
      sweep: async (info) => {
        sweeps.push(info);
      },
    });
    await runPass();
    await runPass();
    expect(dispatched.map((d) => d.missionId)).toEqual(['a']);

    // A mission due before the point the scan has passed, and a pass that fails after applying it.
    await insertPlannable(db.sql, [{ userId: 'u2', missionId: 'b', nextRunAt: inMs(-30_000) }]);
    await db.sql`ALTER TABLE mana_ai.occurrences RENAME TO occurrences_away`;
    try {
      await expect(runPass()).rejects.toMatchObject({ code: '42P01' });
    } finally {
      await db.sql`ALTER TABLE mana_ai.occurrences_away RENAME TO occurrences`;
    }
    sweeps.length = 0;
    const next = await runPass();
    expect(next.stats.rowsApplied).toBe(0);
    expect(dispatched.map((d) => d.missionId)).toEqual(['a', 'b']);
    expect(sweeps).toEqual([expect.objectContaining({ projectionChanged: true, changed: [{ userId: 'u2', missionId: 'b' }] })]);
  });
});

describe('settling', () => {
  it('an overflowing list of changed missions during a backlog still settles: a paused mission\'s occurrence is superseded', async () => {
    await insertPlannable(db.sql, [{ userId: 'u3', missionId: 'p', nextRunAt: inMs(-1000) }]);
    const projection = createProjection({ sql: db.sql, log, batchRows: 1000, cacheRecords: 100 });
    await projection.refresh();
    const life = lifecycle();
    const [due] = (await db.sql<{ nextRunAt: string }[]>`SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "nextRunAt" FROM mana_ai.mission_snapshots`);
    await life.createDue([{ userId: 'u3', missionId: 'p', nextRunAt: due!.nextRunAt }], () => 'fallback', 60_000, () => undefined);
    const hooks = { reroute: async () => undefined };
    // The first sweep settles everything (nothing to do yet) and starts the periodic clock.
    await life.sweep({ projectionChanged: true, changed: null }, hooks);

    await updateMission(db.sql, 'u3', 'p', { state: 'paused' });
    await projection.refresh();
    // Too many missions changed to list, during a backlog (the full settle waits while one drains).
    await life.sweep({ projectionChanged: true, changed: null, backlog: true }, hooks);
    const [row] = await db.sql<{ status: string; reason: string }[]>`SELECT status, reason FROM mana_ai.occurrences WHERE user_id = 'u3'`;
    expect(row).toEqual({ status: 'superseded', reason: 'mission-inactive' });
  });
});
