/**
 * The claim API over real HTTP: every status the routes promise (200, 401,
 * 403, 404, 409, 410), release handing the occurrence to the fallback at
 * once, the operator listing behind X-Service-Key, and the OpenAPI document.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SERVICE_KEY } from '../../src/config.js';
import { createTestDb, type TestDb } from '../support/db.js';
import {
  connectClient,
  createFallbackSpy,
  inMs,
  insertMissions,
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
let token: string;

beforeAll(async () => {
  db = await createTestDb();
  fallback = createFallbackSpy();
  c = await startTestCoordinator(db.sql, { RATE_LIMIT_PER_MINUTE: '100000', INSTANCE_ID: 'http-test' }, { fallback });
  token = await c.token('u1');
  ws = await connectClient(c.wsUrl, { token, deviceId: 'laptop' });
});

afterAll(async () => {
  await ws.close();
  await c.stop();
  await db.drop();
});

async function act(iterationId: string, action: 'claim' | 'complete' | 'release', deviceId: string, as = token, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${c.url}/v1/occurrences/${iterationId}/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${as}`, 'content-type': 'application/json' },
    body: JSON.stringify({ deviceId, ...extra }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { error?: { code: string; message: string } } };
}

/** A fresh mission due now for u1; resolves with its nudge's iterationId. */
async function dueOccurrence(missionId: string): Promise<string> {
  await insertMissions(db.sql, [{ userId: 'u1', missionId, nextRunAt: inMs(50) }]);
  return (await ws.next('mission-due', (f) => f.missionId === missionId)).iterationId;
}

describe('claim / complete / release', () => {
  it('claim: 200 for the first device (and its renewal), 409 for another, 404 unknown, 400 malformed, 403 another user', async () => {
    const id = await dueOccurrence('m-claim');
    const first = await act(id, 'claim', 'laptop');
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ granted: true, leaseExpiresAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/), leaseMs: expect.any(Number) });
    // The lease left by the server's clock: the default lease (10 min), less the time the answer took.
    expect(first.body['leaseMs']).toBeGreaterThan(590_000);
    expect(first.body['leaseMs']).toBeLessThanOrEqual(600_000);

    const renewed = await act(id, 'claim', 'laptop');
    expect(renewed.status).toBe(200);
    expect(Date.parse(renewed.body['leaseExpiresAt'] as string)).toBeGreaterThanOrEqual(Date.parse(first.body['leaseExpiresAt'] as string));

    const other = await act(id, 'claim', 'phone');
    expect(other.status).toBe(409);
    expect(other.body.error?.code).toBe('held');

    expect((await act(crypto.randomUUID(), 'claim', 'laptop')).status).toBe(404);
    expect((await act('not-a-uuid', 'claim', 'laptop')).status).toBe(400);
    expect((await act(id, 'claim', 'bad device id!')).status).toBe(400);
    expect((await act(id, 'claim', 'laptop', await c.token('u2'))).status).toBe(403);
  });

  it('complete: 409 for a device that does not hold it, 200 for the holder (twice), then 410 for everything else', async () => {
    const id = await dueOccurrence('m-complete');
    // Not claimed yet: nobody holds it, so nobody can complete it.
    expect((await act(id, 'complete', 'laptop')).status).toBe(409);
    expect((await act(id, 'claim', 'laptop')).status).toBe(200);
    expect((await act(id, 'complete', 'phone')).status).toBe(409);

    const done = await act(id, 'complete', 'laptop');
    expect(done).toEqual({ status: 200, body: { ok: true, status: 'completed' } });
    expect((await act(id, 'complete', 'laptop')).status).toBe(200);

    for (const [action, device] of [['claim', 'phone'], ['claim', 'laptop'], ['release', 'laptop'], ['complete', 'phone']] as const) {
      const res = await act(id, action, device);
      expect(res.status, `${action} by ${device}`).toBe(410);
      expect(res.body.error?.code).toBe('gone');
    }
    expect(fallback.calls.map((o) => o.iterationId)).not.toContain(id);
  });

  it('release: 409 for a non-holder; the holder releases and the fallback gets it at once', async () => {
    const id = await dueOccurrence('m-release');
    expect((await act(id, 'claim', 'laptop')).status).toBe(200);
    expect((await act(id, 'release', 'phone')).status).toBe(409);

    const released = Date.now();
    const res = await act(id, 'release', 'laptop', token, { reason: 'local planner failed' });
    expect(res).toEqual({ status: 200, body: { ok: true, status: 'nudged' } });
    const call = await waitFor(() => fallback.calls.find((o) => o.iterationId === id), 2000, 'the fallback after release');
    // The claim deadline is 20 s by default: this is the release, not the deadline.
    expect(Date.now() - released).toBeLessThan(1000);
    expect(call).toMatchObject({ status: 'planning', channel: 'server', claimedBy: 'server:http-test', lastError: 'released by laptop: local planner failed', reason: 'device-released' });

    // The server holds it now.
    const late = await act(id, 'claim', 'laptop');
    expect(late.status).toBe(409);
    expect(late.body.error?.message).toContain('server');
  });

  it("GET /v1/occurrences shows the user who holds it as a kind of party and why as a code, never the operators' detail", async () => {
    const held = await dueOccurrence('m-view-held');
    expect((await act(held, 'claim', 'laptop')).status).toBe(200);
    const released = await dueOccurrence('m-view-released');
    expect((await act(released, 'claim', 'phone')).status).toBe(200);
    expect((await act(released, 'release', 'phone', token, { reason: 'planner said: secret-host.internal:8443 refused' })).status).toBe(200);
    await waitFor(() => fallback.calls.find((o) => o.iterationId === released), 2000, 'the fallback after release');

    const view = async (query: string) => {
      const res = await fetch(`${c.url}/v1/occurrences${query}`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      return { text: await res.clone().text(), list: (await res.json()) as Record<string, unknown>[] };
    };
    const { text, list } = await view('?deviceId=laptop');
    expect(text).not.toContain('secret-host');
    expect(text).not.toContain('server:http-test');
    expect(text).not.toContain('phone');
    for (const o of list) expect(Object.keys(o)).not.toContain('lastError');
    expect(list.find((o) => o['iterationId'] === held)).toMatchObject({ status: 'claimed', claimedBy: 'device', mine: true, reason: null });
    expect(list.find((o) => o['iterationId'] === released)).toMatchObject({
      status: 'planning',
      claimedBy: 'server',
      mine: false,
      reason: { code: 'device-released', message: expect.stringContaining('gave it back') },
    });
    // Without a deviceId nothing is "mine"; a malformed one is refused.
    expect((await view('')).list.find((o) => o['iterationId'] === held)).toMatchObject({ claimedBy: 'device', mine: false });
    const bad = await fetch(`${c.url}/v1/occurrences?deviceId=${encodeURIComponent('no spaces/allowed')}`, { headers: { authorization: `Bearer ${token}` } });
    expect(bad.status).toBe(400);
  });

  it('a superseded occurrence answers 410', async () => {
    const id = await dueOccurrence('m-paused');
    await updateMission(db.sql, 'u1', 'm-paused', { state: 'paused' });
    const res = await waitFor(async () => {
      const r = await act(id, 'claim', 'laptop');
      return r.status === 410 ? r : undefined;
    }, 3000, 'the claim to answer 410');
    expect(res.body.error?.message).toContain('superseded');
  });

  it('without a bearer token every claim route answers 401', async () => {
    for (const action of ['claim', 'complete', 'release']) {
      const res = await fetch(`${c.url}/v1/occurrences/${crypto.randomUUID()}/${action}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ deviceId: 'laptop' }),
      });
      expect(res.status, action).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
  });
});

describe('operators and the contract', () => {
  it('GET /internal/occurrences?userId= lists them in the documented shape behind X-Service-Key', async () => {
    const id = await dueOccurrence('m-listed');
    expect((await fetch(`${c.url}/internal/occurrences?userId=u1`)).status).toBe(401);
    expect((await fetch(`${c.url}/internal/occurrences?userId=u1`, { headers: { 'x-service-key': 'wrong-key-123' } })).status).toBe(401);

    const res = await fetch(`${c.url}/internal/occurrences?userId=u1`, { headers: { 'x-service-key': DEFAULT_SERVICE_KEY } });
    expect(res.status).toBe(200);
    const list = (await res.json()) as Record<string, unknown>[];
    expect(list.length).toBeGreaterThanOrEqual(1);
    for (const o of list) {
      expect(Object.keys(o).sort()).toEqual(
        ['attempts', 'channel', 'claimedBy', 'deadlineAt', 'dueAt', 'iterationId', 'lastError', 'leaseExpiresAt', 'missionId', 'offers', 'reason', 'routeAttempts', 'status', 'userId'],
      );
      expect(o['userId']).toBe('u1');
    }
    expect(list.find((o) => o['iterationId'] === id)).toMatchObject({
      missionId: 'm-listed',
      status: 'nudged',
      channel: 'ws',
      claimedBy: null,
      deadlineAt: expect.stringMatching(/Z$/),
      leaseExpiresAt: null,
      attempts: 0,
      routeAttempts: 0,
      offers: 1,
      reason: null,
      lastError: null,
    });

    const none = await fetch(`${c.url}/internal/occurrences?userId=nobody`, { headers: { 'x-service-key': DEFAULT_SERVICE_KEY } });
    expect(await none.json()).toEqual([]);
  });

  it('/openapi.json describes the claim routes and the operator listing', async () => {
    const doc = (await (await fetch(`${c.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    for (const action of ['claim', 'complete', 'release']) {
      const op = doc.paths[`/v1/occurrences/{iterationId}/${action}`]?.['post'];
      expect(op, action).toBeDefined();
      expect(Object.keys(op!.responses)).toEqual(expect.arrayContaining(['200', '401', '403', '404', '409', '410']));
    }
    expect(doc.paths['/internal/occurrences']?.['get']).toBeDefined();
  });
});
