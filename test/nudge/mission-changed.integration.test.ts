/**
 * Devices hear of a server write at once, on whichever instance holds their
 * socket: two coordinators on one database, the user's sockets on both; the
 * server plans on A (the device was nudged and did not claim), and every
 * live socket of the user, on A and on B, gets one `mission-changed` naming
 * the mission and the iteration, within a second of the commit. A repair of
 * a dropped write is news too; another user hears nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { connectClient, type WsClient } from '../support/coordinator.js';
import { startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { inMs, insertPlannableMissions, occurrenceRows, startPlanningCoordinator, waitFor, type PlanningCoordinator } from '../planner/support.js';

let db: TestDb;
let stub: LlmStub;
let a: PlanningCoordinator;
let b: PlanningCoordinator;
const sockets: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb({ poolMax: 10 });
  stub = await startLlmStub();
  // A runs the passes and plans; B only holds sockets (no passes), so what reaches B came over NOTIFY.
  a = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'mc-a', WS_CLAIM_TIMEOUT_MS: '300' });
  b = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'mc-b', TICK_ENABLED: 'false' });
});

afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()));
  await a?.stop();
  await b?.stop();
  await stub?.close();
  await db?.drop();
});

async function socket(c: PlanningCoordinator, userId: string, deviceId: string): Promise<WsClient> {
  const s = await connectClient(c.wsUrl, { token: await c.token(userId), deviceId });
  sockets.push(s);
  return s;
}

const changed = (s: WsClient) => s.frames.filter((f) => f.type === 'mission-changed');

/** When the runner row with this iteration committed, as the database clock has it (ms). */
async function committedAt(userId: string, nth: number): Promise<number> {
  const rows = await db.sql<{ at: Date }[]>`
    SELECT created_at AS at FROM sync_changes WHERE user_id = ${userId} AND client_id = 'mana-ai-runner' ORDER BY created_at`;
  return rows[nth]!.at.getTime();
}

describe('mission-changed', () => {
  it('reaches every live socket of the user on both instances, once each, within a second of the write', async () => {
    const onA = await socket(a, 'mc-alice', 'laptop');
    const onB = await socket(b, 'mc-alice', 'phone');
    const other = await socket(b, 'mc-bob', 'tablet');
    await waitFor(async () => ((await db.sql`SELECT 1 FROM mana_ai.presence WHERE user_id = 'mc-alice'`).length === 2 ? true : undefined), 3000, 'both presences');

    await insertPlannableMissions(db.sql, [{ userId: 'mc-alice', missionId: 'm1', nextRunAt: inMs(-500) }]);
    // Nudged on both sockets; nobody claims; the deadline passes and A plans it.
    await onB.next('mission-due');
    const occ = await waitFor(async () => (await occurrenceRows(db.sql, 'mc-alice')).find((o) => o.status === 'planned'), 10_000, 'planned by the server');
    const frameA = await onA.next('mission-changed', undefined, 3000);
    const frameB = await onB.next('mission-changed', undefined, 3000);
    expect(frameA).toEqual({ type: 'mission-changed', missionId: 'm1', iterationId: occ.iterationId });
    expect(frameB).toEqual(frameA);
    const at = await committedAt('mc-alice', 0);
    for (const s of [onA, onB]) {
      const i = s.frames.findIndex((f) => f.type === 'mission-changed');
      expect(s.arrivals[i]! - at, 'ms from the write to the frame').toBeLessThan(1000);
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(changed(onA)).toHaveLength(1);
    expect(changed(onB)).toHaveLength(1);
    expect(changed(other)).toHaveLength(0);
    expect((await a.scrape()).value('mana_ai_ws_mission_changed_sent_total')).toBe(1);
    expect((await b.scrape()).value('mana_ai_ws_mission_changed_sent_total')).toBe(1);

    // A device rewrites the iterations without ours: the repair is a write too, and the sockets hear of it.
    await db.sql`
      INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin)
      VALUES ('ai', 'aiMissions', 'm1', 'mc-alice', 'update', ${db.sql.json({ iterations: [] })}, ${db.sql.json({ iterations: new Date().toISOString() })}, 'device-1', 'user')`;
    await waitFor(() => (changed(onB).length === 2 && changed(onA).length === 2 ? true : undefined), 10_000, 'the repair announced');
    expect(changed(onB)[1]).toEqual({ type: 'mission-changed', missionId: 'm1', iterationId: occ.iterationId });
    expect(changed(other)).toHaveLength(0);
  });
});
