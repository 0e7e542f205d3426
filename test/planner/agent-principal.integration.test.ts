/**
 * Every row the server planner writes for a mission is written as the
 * mission's agent (the AI actor's principalId and displayName), not only the
 * planned iteration: a failed iteration written after the last attempt, and
 * a repair after a device's write dropped ours.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { seedAgents } from '../support/agents.js';
import { seedMissions } from '../support/missions.js';
import { inMs, occurrenceRows, projected, runnerRows, startPlanningCoordinator, waitFor, type PlanningCoordinator } from './support.js';

let db: TestDb;
let stub: LlmStub;
let c: PlanningCoordinator;

beforeEach(async () => {
  db = await createTestDb({ poolMax: 6 });
});

afterEach(async () => {
  await c.stop();
  await stub.close();
  await db.drop();
});

const AS_AGENT = { kind: 'ai', principalId: 'a-7', displayName: 'Planner Seven' };

async function dueMissionOfAgent(userId: string): Promise<void> {
  await seedAgents(db.sql, [{ userId, agentId: 'a-7', name: 'Planner Seven' }]);
  await seedMissions(db.sql, [{ userId, missionId: 'm1', nextRunAt: inMs(-1000), extra: { agentId: 'a-7' } }], { clientId: 'device-1' });
}

it('a failed iteration is written as the agent', async () => {
  stub = await startLlmStub(reply.prose());
  c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'principal-failed', PLANNER_MAX_ATTEMPTS: '1' });
  await dueMissionOfAgent('fox');
  await waitFor(async () => (await occurrenceRows(db.sql, 'fox')).find((o) => o.status === 'failed'), 10_000, 'failed');
  const [row] = await runnerRows(db.sql, 'fox');
  expect(row!.data.iterations.at(-1)!.overallStatus).toBe('failed');
  expect(row!.actor).toMatchObject(AS_AGENT);
});

it('a repair of a dropped iteration is written as the agent', async () => {
  stub = await startLlmStub();
  c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'principal-repair' });
  await dueMissionOfAgent('gil');
  const occ = await waitFor(async () => (await occurrenceRows(db.sql, 'gil')).find((o) => o.status === 'planned'), 10_000, 'planned');
  await c.planner!.idle();
  await waitFor(async () => (await projected(db.sql, 'gil', 'm1'))?.iterations?.length === 1, 5000, 'projected');
  // A device writes the whole iterations array without ours, stamped after it.
  await db.sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin, actor)
    VALUES ('ai', 'aiMissions', 'm1', 'gil', 'update', ${db.sql.json({ iterations: [] })}, ${db.sql.json({ iterations: new Date().toISOString() })},
            'device-1', 'user', ${db.sql.json({ kind: 'user' })})`;
  await waitFor(async () => (await runnerRows(db.sql, 'gil')).length === 2, 10_000, 'the repair');
  const rows = await runnerRows(db.sql, 'gil');
  expect(rows[1]!.data.iterations.map((i) => i.id)).toEqual([occ.iterationId]);
  expect(rows.map((r) => r.actor)).toEqual([expect.objectContaining(AS_AGENT), expect.objectContaining(AS_AGENT)]);
});
