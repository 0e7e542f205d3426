/**
 * A paused agent's due mission is left alone on every path, and planned once
 * the agent resumes: a real coordinator with server planning (a stub
 * mana-llm), a real Postgres, a live `ws` client, a real local push service
 * (web-push-testing), agents and missions written into the change log as
 * mana-sync writes them. Beside each paused mission a mission of another,
 * active agent falls due at the same time: once that one is nudged, pushed
 * or planned, the passes that would have handled the paused one have run.
 * Nothing here moves the ledger by hand: resuming is a device's write.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_AGENT_ID } from '../../src/agents/agent.js';
import { PushNudgePayload } from '../../src/nudge/protocol.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { seedAgents, updateAgent } from '../support/agents.js';
import { seedMissions } from '../support/missions.js';
import { connectClient, type WsClient } from '../support/ws-client.js';
import { inMs, occurrenceRows, runnerRows, sleep, startPlanningCoordinator, waitFor, type PlanningCoordinator } from '../planner/support.js';
import { startWebPushTesting, type WebPushTesting } from '../nudge/web-push-testing-server.js';
import { putSubscription } from '../faults/support.js';

let db: TestDb;
let stub: LlmStub;
let wpt: WebPushTesting;
let c: PlanningCoordinator;
const sockets: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb({ poolMax: 8 });
  stub = await startLlmStub(reply.plan());
  wpt = await startWebPushTesting();
  c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'agents-paused', PUSH_ENDPOINT_ALLOWLIST: wpt.origin, PUSH_CLAIM_TIMEOUT_MS: '60000' });
});

afterAll(async () => {
  for (const s of sockets) await s.close();
  await c?.stop();
  await wpt?.close();
  await stub?.close();
  await db?.drop();
});

/** A mission due a moment ago, of `agentId` (none: a legacy mission without one), titled by its user and id. */
async function dueMission(userId: string, missionId: string, agentId?: string): Promise<void> {
  await seedMissions(db.sql, [{ userId, missionId, nextRunAt: inMs(-500), title: `Title ${userId}/${missionId}`, extra: agentId === undefined ? {} : { agentId } }], {
    clientId: 'device-1',
  });
}

async function socketFor(userId: string): Promise<WsClient> {
  const s = await connectClient(c.wsUrl, { token: await c.token(userId), deviceId: `${userId}-laptop` });
  sockets.push(s);
  return s;
}

async function occurrenceOf(userId: string, missionId: string, status: string) {
  return waitFor(async () => (await occurrenceRows(db.sql, userId)).find((o) => o.missionId === missionId && o.status === status), 10_000, `${userId}/${missionId} ${status}`);
}

const ofMission = (missionId: string) => (f: { missionId: string }) => f.missionId === missionId;

describe('socket', () => {
  it('a live client gets no nudge while the agent is paused, and one it can claim once the agent resumes', async () => {
    await seedAgents(db.sql, [{ userId: 'sam', agentId: 'a-paused', state: 'paused' }, { userId: 'sam', agentId: 'a-active' }]);
    const ws = await socketFor('sam');
    await dueMission('sam', 'm-paused', 'a-paused');
    await dueMission('sam', 'm-control', 'a-active');

    await ws.next('mission-due', ofMission('m-control'));
    await sleep(500);
    expect(ws.nudges().filter(ofMission('m-paused'))).toEqual([]);
    expect((await occurrenceRows(db.sql, 'sam')).map((o) => o.missionId)).toEqual(['m-control']);

    await updateAgent(db.sql, 'sam', 'a-paused', { state: 'active' });
    const nudge = await ws.next('mission-due', ofMission('m-paused'));
    ws.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await ws.next('claim-result', (f) => f.iterationId === nudge.iterationId)).toMatchObject({ granted: true });
    expect(stub.requestsFor('Title sam/m-paused')).toHaveLength(0);
  });

  it('pausing settles the open occurrence; resuming offers the same occurrence again, with a higher attempt the device acts on', async () => {
    await seedAgents(db.sql, [{ userId: 'tia', agentId: 'a-1' }]);
    const ws = await socketFor('tia');
    await dueMission('tia', 'm1', 'a-1');
    const first = await ws.next('mission-due', ofMission('m1'));
    expect(first.attempt ?? 1).toBe(1);

    await updateAgent(db.sql, 'tia', 'a-1', { state: 'paused' });
    const superseded = await occurrenceOf('tia', 'm1', 'superseded');
    expect(superseded).toMatchObject({ iterationId: first.iterationId, reason: 'agent-paused' });
    // A device asking now is told it is over.
    ws.send({ type: 'claim', iterationId: first.iterationId });
    expect(await ws.next('claim-result', (f) => f.iterationId === first.iterationId)).toMatchObject({ granted: false });

    await updateAgent(db.sql, 'tia', 'a-1', { state: 'active' });
    const again = await ws.next('mission-due', (f) => f.missionId === 'm1' && (f.attempt ?? 1) > 1);
    expect(again.iterationId).toBe(first.iterationId);
    ws.send({ type: 'claim', iterationId: again.iterationId });
    await ws.next('claim-result', (f) => f.iterationId === again.iterationId && f.granted === true);
    expect(stub.requestsFor('Title tia/m1')).toHaveLength(0);
  });
});

describe('push', () => {
  it('a device reachable only by push gets no push while the agent is paused, and one once it resumes', async () => {
    const { publicKey } = (await (await fetch(`${c.url}/v1/push/vapid-public-key`)).json()) as { publicKey: string };
    const paused = await wpt.subscribe(publicKey);
    const control = await wpt.subscribe(publicKey);
    expect((await putSubscription(c.url, await c.token('pia'), 'phone', paused)).status).toBe(201);
    expect((await putSubscription(c.url, await c.token('pit'), 'phone', control)).status).toBe(201);
    await seedAgents(db.sql, [{ userId: 'pia', agentId: 'a-1', state: 'paused' }, { userId: 'pit', agentId: 'a-1' }]);
    await dueMission('pia', 'm-paused', 'a-1');
    await dueMission('pit', 'm-control', 'a-1');

    await waitFor(async () => (await wpt.notifications(control.clientHash)).length > 0, 10_000, 'the control push');
    await sleep(1000);
    expect(await wpt.notifications(paused.clientHash)).toEqual([]);
    expect(await occurrenceRows(db.sql, 'pia')).toEqual([]);

    await updateAgent(db.sql, 'pia', 'a-1', { state: 'active' });
    await waitFor(async () => (await wpt.notifications(paused.clientHash)).length > 0, 10_000, 'the push after resume');
    const [payload] = (await wpt.notifications(paused.clientHash)).map((m) => PushNudgePayload.parse(JSON.parse(m)));
    expect(payload).toMatchObject({ missionId: 'm-paused' });
    expect(stub.requestsFor('Title pia/m-paused')).toHaveLength(0);
  });
});

describe('server', () => {
  it('a user with no device: no server plan while the agent is paused; planned once it resumes', async () => {
    await seedAgents(db.sql, [{ userId: 'sol', agentId: 'a-1', state: 'paused' }, { userId: 'ctl', agentId: 'a-1' }]);
    await dueMission('sol', 'm-paused', 'a-1');
    await dueMission('ctl', 'm-control', 'a-1');

    await occurrenceOf('ctl', 'm-control', 'planned');
    await sleep(500);
    expect(await occurrenceRows(db.sql, 'sol')).toEqual([]);
    expect(stub.requestsFor('Title sol/m-paused')).toHaveLength(0);

    await updateAgent(db.sql, 'sol', 'a-1', { state: 'active' });
    await occurrenceOf('sol', 'm-paused', 'planned');
    expect(stub.requestsFor('Title sol/m-paused')).toHaveLength(1);
    expect(await runnerRows(db.sql, 'sol')).toHaveLength(1);
  });

  it('an occurrence waiting for the agent, superseded by its pause, is the one planned after its resume', async () => {
    // maxConcurrentMissions 0: the server never plans for it, so the occurrence waits.
    await seedAgents(db.sql, [{ userId: 'uwe', agentId: 'a-1', maxConcurrentMissions: 0 }]);
    await dueMission('uwe', 'm1', 'a-1');
    const waiting = await occurrenceOf('uwe', 'm1', 'waiting');
    expect(waiting.reason).toBe('agent-concurrency');

    await updateAgent(db.sql, 'uwe', 'a-1', { state: 'archived' });
    expect(await occurrenceOf('uwe', 'm1', 'superseded')).toMatchObject({ iterationId: waiting.iterationId, reason: 'agent-archived' });

    await updateAgent(db.sql, 'uwe', 'a-1', { state: 'active', maxConcurrentMissions: 1 });
    const planned = await occurrenceOf('uwe', 'm1', 'planned');
    expect(planned.iterationId).toBe(waiting.iterationId);
    expect(stub.requestsFor('Title uwe/m1')).toHaveLength(1);
    const [row] = await runnerRows(db.sql, 'uwe');
    expect(row!.data.iterations.map((it) => it.id)).toEqual([waiting.iterationId]);
  });
});

describe('deleted and default agents', () => {
  it("a mana-sync delete row carrying deletedAt (a soft delete) stops the agent's missions like a deleted agent", async () => {
    await seedAgents(db.sql, [{ userId: 'dee', agentId: 'a-1', maxConcurrentMissions: 0 }]);
    await dueMission('dee', 'm1', 'a-1');
    const waiting = await occurrenceOf('dee', 'm1', 'waiting');
    await db.sql`
      INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
      VALUES ('ai', 'agents', 'a-1', 'dee', 'delete', ${db.sql.json({ deletedAt: new Date().toISOString() })}, 'device-1')`;
    expect(await occurrenceOf('dee', 'm1', 'superseded')).toMatchObject({ iterationId: waiting.iterationId, reason: 'agent-deleted' });
    await dueMission('dee', 'm2', 'a-1');
    await sleep(800);
    expect((await occurrenceRows(db.sql, 'dee')).map((o) => o.missionId)).toEqual(['m1']);
    expect(stub.requestsFor('Title dee/m')).toHaveLength(0);
  });

  it("pausing the user's default agent record stops missions without an agent and missions naming one with no record", async () => {
    await seedAgents(db.sql, [{ userId: 'dov', agentId: DEFAULT_AGENT_ID, state: 'paused' }, { userId: 'dov', agentId: 'a-own' }]);
    await dueMission('dov', 'm-legacy');
    await dueMission('dov', 'm-unknown', 'never-synced');
    await dueMission('dov', 'm-own', 'a-own');
    await occurrenceOf('dov', 'm-own', 'planned');
    await sleep(500);
    expect((await occurrenceRows(db.sql, 'dov')).map((o) => o.missionId)).toEqual(['m-own']);

    await updateAgent(db.sql, 'dov', DEFAULT_AGENT_ID, { state: 'active' });
    await occurrenceOf('dov', 'm-legacy', 'planned');
    await occurrenceOf('dov', 'm-unknown', 'planned');
  });
});
