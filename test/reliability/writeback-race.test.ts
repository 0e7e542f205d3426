/**
 * The race instances.test.ts found under load: a device claims, writes its
 * iteration to the change log, and only then its lease runs out (it was
 * slow to call complete). The server takes the occurrence over and plans
 * it — while the projection, which the planner reads, has not seen the
 * device's row yet. The write-back must find the iteration in the log
 * itself: no second iteration, the occurrence completed (a device did it).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { detectSyncColumns } from '../../src/projection/change-source.js';
import { detectSpaceColumn, RUNNER_CLIENT_ID, writeIteration, type WriteTarget } from '../../src/planner/writeback.js';
import { iterationIdFor } from '../../src/schedule/occurrence-id.js';

let db: TestDb;
let target: WriteTarget;

beforeAll(async () => {
  db = await createTestDb({ poolMax: 2 });
  target = { cols: await detectSyncColumns(db.sql), spaceColumn: await detectSpaceColumn(db.sql, 'public'), writerRole: 'mana_ai_writer' };
});

afterAll(async () => {
  await db?.drop();
});

async function occurrenceHeldByServer(userId: string, missionId: string, dueAt: string): Promise<string> {
  const id = iterationIdFor(userId, missionId, dueAt);
  await db.sql`
    INSERT INTO mana_ai.occurrences (iteration_id, user_id, mission_id, due_at, status, channel, claimed_by, lease_expires_at)
    VALUES (${id}, ${userId}, ${missionId}, ${dueAt}, 'planning', 'server', 'server:b', now() + interval '1 minute')`;
  return id;
}

const iteration = (id: string, source: string) => ({ id, startedAt: new Date().toISOString(), finishedAt: new Date().toISOString(), summary: source, overallStatus: 'awaiting-review' as const, source, plan: [] });

/** A device's iteration `deviceIterationId` lands in the log (no projection pass runs), then the server writes `id`. */
async function deviceThenServer(missionId: string, id: string, deviceIterationId: string) {
  await db.sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin)
    VALUES ('ai', 'aiMissions', ${missionId}, 'race-user', 'update', ${db.sql.json({ iterations: [iteration(deviceIterationId, 'device')] })},
            ${db.sql.json({ iterations: new Date().toISOString() })}, 'laptop', 'user')`;
  return writeIteration(db.sql, target, {
    userId: 'race-user',
    missionId,
    iterationId: id,
    holder: 'server:b',
    iteration: iteration(id, 'server') as never,
    baseIterations: [],
    nextRunAt: null,
    finalStatus: 'planned',
    at: new Date(),
  });
}

it('writes nothing when a device already wrote the iteration the projection does not show yet', async () => {
  const dueAt = '2026-01-01T09:00:00.000000Z';
  const id = await occurrenceHeldByServer('race-user', 'm1', dueAt);
  const out = await deviceThenServer('m1', id, id);

  expect(out).toBe('present');
  const [occ] = await db.sql<{ status: string }[]>`SELECT status FROM mana_ai.occurrences WHERE iteration_id = ${id}`;
  expect(occ!.status).toBe('completed');
  const runner = await db.sql`SELECT 1 FROM sync_changes WHERE client_id = ${RUNNER_CLIENT_ID} AND record_id = 'm1'`;
  expect(runner).toHaveLength(0);
});

it('still writes when the log holds only other iterations of the mission', async () => {
  const dueAt = '2026-01-02T09:00:00.000000Z';
  const id = await occurrenceHeldByServer('race-user', 'm2', dueAt);
  const out = await deviceThenServer('m2', id, '11111111-1111-5111-8111-111111111111');

  expect(out).toBe('written');
  const [occ] = await db.sql<{ status: string }[]>`SELECT status FROM mana_ai.occurrences WHERE iteration_id = ${id}`;
  expect(occ!.status).toBe('planned');
});
