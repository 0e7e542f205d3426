/**
 * Two more downstream faults, end to end with a stub mana-llm:
 *
 * - a device that claims an occurrence over its socket and then drops off
 *   the network (no close frame): its lease expires, the server plans the
 *   occurrence exactly once, and the device's late `complete` is refused;
 * - the database failing under the coordinator (a table it needs is
 *   missing for a while): passes fail and are counted by SQLSTATE, a socket
 *   that authenticates meanwhile is still accepted, and once the table is
 *   back the work done in between is planned exactly once.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { connectClient, inMs, sleep, waitFor, type WsClient } from '../support/coordinator.js';
import { insertPlannable, ledger, planCount, SERVICE_KEY, startCaptured, type CapturedCoordinator } from './support.js';

let db: TestDb;
let llm: LlmStub;
let c: CapturedCoordinator;
const clients: WsClient[] = [];

beforeEach(async () => {
  db = await createTestDb({ poolMax: 8 });
  llm = await startLlmStub();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((cl) => cl.close()));
  await c?.stop();
  await llm.close();
  await db.drop();
});

async function projectedOnce(userId: string, missionId: string, iterationId: string) {
  await waitFor(async () => (await planCount(db.sql, userId, missionId, iterationId)).projected > 0, 5000, 'the projection to show the plan');
  return planCount(db.sql, userId, missionId, iterationId);
}

describe('a device that claims and disappears', () => {
  it('its lease expires, the server plans the occurrence once, and the late complete is refused', async () => {
    c = await startCaptured(db.sql, { INSTANCE_ID: 'lease', MANA_LLM_URL: llm.url, CLAIM_LEASE_MS: '1000', WS_CLAIM_TIMEOUT_MS: '60000' });
    const device = await connectClient(c.wsUrl, { token: await c.token('ghost'), deviceId: 'phone' });
    clients.push(device);
    await insertPlannable(db.sql, [{ userId: 'ghost', missionId: 'm', nextRunAt: inMs(-500) }]);
    const nudge = await device.next('mission-due');
    device.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await device.next('claim-result')).toMatchObject({ granted: true });
    const claimedAt = Date.now();
    // Gone without a close handshake, like a phone losing its network.
    device.ws.terminate();

    const occ = await waitFor(async () => (await ledger(db.sql, 'ghost')).find((o) => o.status === 'planned'), 8000, 'the server plan');
    expect(Date.now() - claimedAt).toBeGreaterThanOrEqual(900);
    await c.planner!.idle();
    expect(await ledger(db.sql, 'ghost')).toEqual([expect.objectContaining({ iterationId: nudge.iterationId, status: 'planned', channel: 'server' })]);
    expect(await projectedOnce('ghost', 'm', nudge.iterationId)).toEqual({ rows: 1, projected: 1 });
    expect(llm.requests).toHaveLength(1);

    // The device comes back and reports its own plan: too late, and nothing changes.
    const res = await fetch(`${c.url}/v1/occurrences/${occ.iterationId}/complete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await c.token('ghost')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ deviceId: 'phone' }),
    });
    expect(res.status).toBe(410);
    expect(await ledger(db.sql, 'ghost')).toEqual([expect.objectContaining({ status: 'planned' })]);

    const m = await c.scrape();
    expect(m.value('mana_ai_occurrences_expired_total')).toBe(1);
    expect(m.value('mana_ai_planner_runs_total', { outcome: 'planned' })).toBe(1);
    expect(m.value('mana_ai_ws_connections')).toBe(0);
  });
});

describe('the database failing under the coordinator', () => {
  it('passes fail and are counted by SQLSTATE; sockets still authenticate; afterwards the missed work is planned once', async () => {
    c = await startCaptured(db.sql, { INSTANCE_ID: 'db-fault', MANA_LLM_URL: llm.url });
    await waitFor(async () => (await c.scrape()).value('mana_ai_ticks_total', { outcome: 'ok' }) > 0, 5000, 'a first pass');

    await db.sql`ALTER TABLE mana_ai.presence RENAME TO presence_away`;
    await db.sql`ALTER TABLE sync_changes RENAME TO sync_changes_away`;
    try {
      await waitFor(async () => (await c.scrape()).value('mana_ai_db_errors_total', { code: '42P01' }) >= 3, 5000, 'failing passes to be counted');
      const health = (await (await fetch(`${c.url}/health`, { headers: { 'x-service-key': SERVICE_KEY } })).json()) as { status: string; scheduler: { lastError: string | null } };
      expect(health.status).toBe('ok');
      expect(health.scheduler.lastError).toMatch(/sync_changes/);

      // The presence row cannot be written: the socket is accepted anyway and works.
      const ws = await connectClient(c.wsUrl, { token: await c.token('during'), deviceId: 'tab' });
      clients.push(ws);
      // (The refusal, when there was one, came right after auth-ok.)
      await sleep(300);
      ws.send({ type: 'ping' });
      await ws.next('pong');
      expect(ws.frames.some((f) => f.type === 'error')).toBe(false);
      await ws.close();

      // A mission written while the coordinator cannot read the log.
      await db.sql`
        INSERT INTO sync_changes_away (app_id, table_name, record_id, user_id, op, data, client_id)
        VALUES ('ai', 'aiMissions', 'm', 'late', 'insert', ${db.sql.json({
          id: 'm',
          title: 'written during the outage',
          objective: 'x',
          cadence: { kind: 'daily', atHour: 9, atMinute: 0 },
          state: 'active',
          iterations: [],
          nextRunAt: inMs(-1000),
          createdAt: inMs(-60_000),
        })}, 'device-1')`;
      await sleep(300);
    } finally {
      await db.sql`ALTER TABLE sync_changes_away RENAME TO sync_changes`;
      await db.sql`ALTER TABLE mana_ai.presence_away RENAME TO presence`;
    }

    const occ = await waitFor(async () => (await ledger(db.sql, 'late')).find((o) => o.status === 'planned'), 8000, 'the plan after the outage');
    await c.planner!.idle();
    expect(await projectedOnce('late', 'm', occ.iterationId)).toEqual({ rows: 1, projected: 1 });
    expect(await ledger(db.sql, 'late')).toHaveLength(1);
    const health = (await (await fetch(`${c.url}/health`, { headers: { 'x-service-key': SERVICE_KEY } })).json()) as { scheduler: { lastError: string | null } };
    expect(health.scheduler.lastError).toBeNull();
    // The outage was logged once when it began and once when it ended, not once per failed pass.
    const records = c.records();
    expect(records.filter((r) => r['msg'] === 'scheduler pass failed; retrying every interval until it succeeds')).toHaveLength(1);
    expect(records.filter((r) => r['msg'] === 'scheduler passes succeed again')).toHaveLength(1);
    expect((await c.scrape()).value('mana_ai_ticks_total', { outcome: 'error' })).toBeGreaterThanOrEqual(3);
  });
});
