/**
 * Settling open occurrences from the mission log: the mission moved on, so
 * the occurrence is superseded (paused, deleted, rescheduled) or completed
 * (its iteration appeared, or nextRunAt moved past dueAt). Each change goes
 * through sync_changes and the projection, as a device's edit would.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import {
  connectClient,
  createFallbackSpy,
  inMs,
  insertMissions,
  occurrencesOf,
  startTestCoordinator,
  updateMission,
  waitFor,
  type FallbackSpy,
  type TestCoordinator,
  type WsClient,
} from '../support/coordinator.js';

let db: TestDb;
let c: TestCoordinator;
let fallback: FallbackSpy;
let ws: WsClient;

beforeEach(async () => {
  db = await createTestDb();
  fallback = createFallbackSpy();
  c = await startTestCoordinator(db.sql, {}, { fallback });
  ws = await connectClient(c.wsUrl, { token: await c.token('u1'), deviceId: 'laptop' });
});

afterEach(async () => {
  await ws.close();
  await c.stop();
  await db.drop();
});

/** A mission due now, nudged to the open socket; returns its frame. */
async function nudged(missionId: string) {
  const dueAt = inMs(100);
  await insertMissions(db.sql, [{ userId: 'u1', missionId, nextRunAt: dueAt }]);
  const frame = await ws.next('mission-due', (f) => f.missionId === missionId);
  return { ...frame, dueAtMs: Date.parse(dueAt) };
}

async function statusOf(iterationId: string) {
  const rows = await occurrencesOf(db.sql, 'u1');
  return rows.find((r) => r.iterationId === iterationId);
}

async function settled(iterationId: string, status: string) {
  return waitFor(async () => {
    const row = await statusOf(iterationId);
    return row?.status === status ? row : undefined;
  }, 3000, `occurrence ${iterationId} to become ${status}`);
}

describe('settling occurrences from the mission log', () => {
  it('pausing the mission supersedes its occurrence', async () => {
    const n = await nudged('m-pause');
    await updateMission(db.sql, 'u1', 'm-pause', { state: 'paused' });
    const row = await settled(n.iterationId, 'superseded');
    expect(row).toMatchObject({ lastError: 'mission paused', reason: 'mission-inactive' });
    // A superseded occurrence cannot be claimed any more.
    ws.send({ type: 'claim', iterationId: n.iterationId });
    expect(await ws.next('claim-result')).toMatchObject({ granted: false, reason: 'gone' });
  });

  it('deleting the mission supersedes its occurrence', async () => {
    const n = await nudged('m-del');
    await updateMission(db.sql, 'u1', 'm-del', { deletedAt: new Date().toISOString() });
    expect(await settled(n.iterationId, 'superseded')).toMatchObject({ lastError: 'mission deleted', reason: 'mission-deleted' });
  });

  it('rescheduling the mission to another nextRunAt supersedes the occurrence; the new time gets its own', async () => {
    const n = await nudged('m-move');
    const earlier = new Date(n.dueAtMs - 60_000).toISOString();
    await updateMission(db.sql, 'u1', 'm-move', { nextRunAt: earlier });
    expect(await settled(n.iterationId, 'superseded')).toMatchObject({ lastError: 'mission rescheduled', reason: 'mission-rescheduled' });
    // The rescheduled time is already due: a new occurrence with a new id is nudged.
    const again = await ws.next('mission-due', (f) => f.missionId === 'm-move' && f.iterationId !== n.iterationId);
    expect(Date.parse(again.dueAt)).toBe(Date.parse(earlier));
  });

  it('clearing nextRunAt supersedes the occurrence', async () => {
    const n = await nudged('m-clear');
    await updateMission(db.sql, 'u1', 'm-clear', { nextRunAt: null });
    expect(await settled(n.iterationId, 'superseded')).toMatchObject({ lastError: 'mission rescheduled', reason: 'mission-rescheduled' });
  });

  it('an iteration with the iterationId appearing on the mission completes it', async () => {
    const n = await nudged('m-iter');
    ws.send({ type: 'claim', iterationId: n.iterationId });
    expect(await ws.next('claim-result')).toMatchObject({ granted: true });
    // The device planned and synced its iteration but never called complete.
    await updateMission(db.sql, 'u1', 'm-iter', {
      iterations: [{ id: n.iterationId, startedAt: new Date().toISOString(), plan: [], overallStatus: 'awaiting-review', source: 'browser' }],
    });
    const row = await settled(n.iterationId, 'completed');
    expect(row.claimedBy).toBe('laptop');
  });

  it('nextRunAt moving past dueAt completes it', async () => {
    const n = await nudged('m-next');
    await updateMission(db.sql, 'u1', 'm-next', { nextRunAt: new Date(n.dueAtMs + 3_600_000).toISOString() });
    await settled(n.iterationId, 'completed');
    expect(fallback.calls).toHaveLength(0);
  });

  it('an occurrence the server is planning is settled the same way', async () => {
    // A user with no socket at all, so the occurrence goes to the server at once.
    await insertMissions(db.sql, [{ userId: 'u-offline', missionId: 'm-srv', nextRunAt: inMs(-10) }]);
    await waitFor(() => fallback.calls.length > 0, 3000, 'the fallback');
    const id = fallback.calls[0]!.iterationId;
    await updateMission(db.sql, 'u-offline', 'm-srv', { state: 'archived' });
    const row = await waitFor(async () => {
      const [r] = await occurrencesOf(db.sql, 'u-offline');
      return r?.status === 'superseded' ? r : undefined;
    }, 3000, 'the occurrence to be superseded');
    expect(row).toMatchObject({ iterationId: id, lastError: 'mission archived', reason: 'mission-inactive' });
  });
});
