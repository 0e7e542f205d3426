/**
 * Claims per browsing context, against a real coordinator: each tab and the
 * service worker of one browser share a device id but claim under their own
 * context id, so the server grants one context, not every context of the
 * browser (two tabs with no Web Locks and a failing dedup store both planned
 * before). A context re-claiming renews its own lease (a claim whose answer
 * was lost), `mine` in the listing names the exact context, and a release
 * says why with a code from a fixed set, never the planner's text.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimantOf, isHeldBy } from '../../src/schedule/claimant.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { connectClient, createFallbackSpy, inMs, insertMissions, occurrencesOf, startTestCoordinator, waitFor, type FallbackSpy, type TestCoordinator, type WsClient } from '../support/coordinator.js';

let db: TestDb;
let c: TestCoordinator;
let fallback: FallbackSpy;
let ws: WsClient;
let token: string;

beforeAll(async () => {
  db = await createTestDb();
  fallback = createFallbackSpy();
  c = await startTestCoordinator(db.sql, { RATE_LIMIT_PER_MINUTE: '100000', INSTANCE_ID: 'ctx' }, { fallback });
  token = await c.token('u1');
  ws = await connectClient(c.wsUrl, { token, deviceId: 'watcher' });
});

afterAll(async () => {
  await ws.close();
  await c.stop();
  await db.drop();
});

async function act(iterationId: string, action: 'claim' | 'complete' | 'release', body: Record<string, unknown>) {
  const res = await fetch(`${c.url}/v1/occurrences/${iterationId}/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { error?: { code: string; message: string } } };
}

async function dueOccurrence(missionId: string): Promise<string> {
  await insertMissions(db.sql, [{ userId: 'u1', missionId, nextRunAt: inMs(50) }]);
  return (await ws.next('mission-due', (f) => f.missionId === missionId)).iterationId;
}

async function list(query: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${c.url}/v1/occurrences${query}`, { headers: { authorization: `Bearer ${token}` } });
  return (await res.json()) as Record<string, unknown>[];
}

describe('the claimant id', () => {
  it('joins device and context with a character neither may contain; mine is the exact context, or the device in any', () => {
    expect(claimantOf('laptop')).toBe('laptop');
    expect(claimantOf('laptop', 'tab-1')).toBe('laptop/tab-1');
    expect(isHeldBy('laptop/tab-1', 'laptop', 'tab-1')).toBe(true);
    expect(isHeldBy('laptop/tab-1', 'laptop', 'tab-2')).toBe(false);
    expect(isHeldBy('laptop/tab-1', 'laptop')).toBe(true);
    expect(isHeldBy('laptop', 'laptop')).toBe(true);
    expect(isHeldBy('laptop2/tab-1', 'laptop')).toBe(false);
    expect(isHeldBy(null, 'laptop')).toBe(false);
  });
});

describe('claims per context', () => {
  it('two contexts of one device: the first is granted (and renews), the second is refused like another device', async () => {
    const id = await dueOccurrence('m-two-tabs');
    const [a, b] = await Promise.all([act(id, 'claim', { deviceId: 'laptop', contextId: 'tab-a' }), act(id, 'claim', { deviceId: 'laptop', contextId: 'tab-b' })]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([200, 409]);
    const [winner, loser] = a.status === 200 ? ['tab-a', 'tab-b'] : ['tab-b', 'tab-a'];
    expect((a.status === 200 ? b : a).body.error?.message).toContain('(device)');
    expect(await occurrencesOf(db.sql, 'u1')).toContainEqual(expect.objectContaining({ iterationId: id, status: 'claimed', claimedBy: `laptop/${winner}` }));

    // A claim whose answer was lost: the same context claims again and is granted a renewed lease.
    const again = await act(id, 'claim', { deviceId: 'laptop', contextId: winner });
    expect(again.status).toBe(200);
    expect(again.body['leaseMs']).toBeGreaterThan(0);
    // The device without a context, or the other context, cannot complete it; the holder can.
    expect((await act(id, 'complete', { deviceId: 'laptop' })).status).toBe(409);
    expect((await act(id, 'complete', { deviceId: 'laptop', contextId: loser })).status).toBe(409);
    expect(await act(id, 'complete', { deviceId: 'laptop', contextId: winner })).toEqual({ status: 200, body: { ok: true, status: 'completed' } });
  });

  it('a context that authenticated its socket with a context id claims as that context over the socket', async () => {
    const tab = await connectClient(c.wsUrl, { token, deviceId: 'laptop', contextId: 'tab-ws' });
    try {
      const id = await dueOccurrence('m-ws-context');
      tab.send({ type: 'claim', iterationId: id });
      expect(await tab.next('claim-result', (f) => f.iterationId === id)).toMatchObject({ granted: true });
      expect((await act(id, 'claim', { deviceId: 'laptop', contextId: 'tab-other' })).status).toBe(409);
      expect((await act(id, 'claim', { deviceId: 'laptop', contextId: 'tab-ws' })).status).toBe(200);
    } finally {
      await tab.close();
    }
  });

  it('the listing says mine for the exact context, and for the device when no context is named', async () => {
    const id = await dueOccurrence('m-mine');
    expect((await act(id, 'claim', { deviceId: 'laptop', contextId: 'tab-mine' })).status).toBe(200);
    const row = async (q: string) => (await list(q)).find((o) => o['iterationId'] === id);
    expect(await row('?deviceId=laptop&contextId=tab-mine')).toMatchObject({ claimedBy: 'device', mine: true });
    expect(await row('?deviceId=laptop&contextId=tab-else')).toMatchObject({ claimedBy: 'device', mine: false });
    expect(await row('?deviceId=laptop')).toMatchObject({ mine: true });
    expect(await row('?deviceId=phone')).toMatchObject({ mine: false });
    const bad = await fetch(`${c.url}/v1/occurrences?deviceId=laptop&contextId=${encodeURIComponent('a/b')}`, { headers: { authorization: `Bearer ${token}` } });
    expect(bad.status).toBe(400);
    expect((await act(id, 'claim', { deviceId: 'laptop', contextId: 'has/slash' })).status).toBe(400);
  });
});

describe('release codes', () => {
  it("a release says why with a fixed code: its user sees the matching reason, operators the code and the note, never more", async () => {
    const id = await dueOccurrence('m-release-code');
    expect((await act(id, 'claim', { deviceId: 'laptop', contextId: 'tab-r' })).status).toBe(200);
    const res = await act(id, 'release', { deviceId: 'laptop', contextId: 'tab-r', code: 'plan-timeout', reason: 'after 300 s' });
    expect(res).toEqual({ status: 200, body: { ok: true, status: 'nudged' } });
    const call = await waitFor(() => fallback.calls.find((o) => o.iterationId === id), 2000, 'the fallback after release');
    expect(call).toMatchObject({ reason: 'device-plan-timeout', lastError: 'released by laptop/tab-r: plan-timeout: after 300 s' });
    const seen = (await list('?deviceId=laptop')).find((o) => o['iterationId'] === id);
    expect(seen).toMatchObject({ reason: { code: 'device-plan-timeout', message: expect.stringContaining('too long') } });
  });

  it('an unknown release code is a 400 naming the allowed ones', async () => {
    const id = await dueOccurrence('m-release-bad');
    expect((await act(id, 'claim', { deviceId: 'laptop' })).status).toBe(200);
    const res = await act(id, 'release', { deviceId: 'laptop', code: 'my planner said: secret' });
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('plan-failed');
    expect(await occurrencesOf(db.sql, 'u1')).toContainEqual(expect.objectContaining({ iterationId: id, status: 'claimed' }));
  });
});
