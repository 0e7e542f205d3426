/**
 * refresh()'s onUnchanged: a pass tells its caller, before it commits, that
 * nothing it commits changes a snapshot, so the due scan need not wait for
 * the commit. Called only then: never when the pass applied a row or still
 * works out agent statuses (a projection's first pass does, for rows a
 * migration left without one), nor twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createTestDb, type TestDb } from '../support/db.js';
import { seedMissions, updateMission } from '../support/missions.js';
import { createProjection, type Projection, type RefreshStats } from '../../src/projection/refresh.js';

const log = pino({ level: 'silent' });
let db: TestDb;
let n = 0;

beforeAll(async () => {
  db = await createTestDb();
  await seedMissions(db.sql, [{ userId: 'u1', missionId: 'm1', nextRunAt: new Date(Date.now() + 86_400_000).toISOString() }]);
});

afterAll(async () => {
  await db?.drop();
});

/** Another app's row: the probe cannot rule the window out, and the window has nothing of ours. */
async function otherAppCommits(): Promise<void> {
  await db.sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
    VALUES ('todo', 'tasks', ${`task-${n++}`}, 'someone', 'update', '{"done":true}'::jsonb, 'other-app')`;
}

/** A refresh, and how often it called onUnchanged before it resolved. */
async function refreshCounting(projection: Projection): Promise<{ stats: RefreshStats; calls: number }> {
  let calls = 0;
  const stats = await projection.refresh({ onUnchanged: () => calls++ });
  return { stats, calls };
}

describe('onUnchanged', () => {
  it('is called once by a pass that applies nothing, and never by one that applies a row or works out agent statuses', async () => {
    const first = createProjection({ sql: db.sql, log, batchRows: 100, cacheRecords: 100 });
    expect(await refreshCounting(first)).toMatchObject({ stats: { ran: true, rowsApplied: 1 }, calls: 0 });

    // Another process's first pass applies nothing, but works out every agent status.
    const second = createProjection({ sql: db.sql, log, batchRows: 100, cacheRecords: 100 });
    await otherAppCommits();
    expect(await refreshCounting(second)).toMatchObject({ stats: { ran: true, rowsApplied: 0 }, calls: 0 });

    await otherAppCommits();
    expect(await refreshCounting(second)).toMatchObject({ stats: { ran: true, rowsApplied: 0 }, calls: 1 });

    await updateMission(db.sql, 'u1', 'm1', { title: 'renamed' });
    expect(await refreshCounting(second)).toMatchObject({ stats: { ran: true, rowsApplied: 1 }, calls: 0 });

    // Quiet: the probe rules the window out, and nothing is committed but the cursor.
    expect(await refreshCounting(second)).toMatchObject({ stats: { ran: true, rowsApplied: 0 }, calls: 1 });
  });
});
