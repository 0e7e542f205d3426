/**
 * One user can never read, claim, complete, release, subscribe for, delete
 * or receive anything of another — over every user route, on the socket,
 * and through Web Push (a real local push service). A user holding a valid
 * token is the attacker here: Mallory knows Bob's user id, mission id,
 * device id, the due time (so the derived iteration id), and even Bob's push
 * endpoint.
 *
 * Re-registering an endpoint under another user MOVES it (docs/architecture.md
 * "Routing": an endpoint belongs to exactly one user): the endpoint URL is the capability,
 * so whoever presents it owns it from then on — Bob stops receiving pushes
 * on it, and Mallory still sees nothing of Bob's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { connectClient, createFallbackSpy, inMs, insertMissions, sleep, waitFor, type FallbackSpy, type WsClient } from '../support/coordinator.js';
import { iterationIdFor } from '../../src/schedule/occurrence-id.js';
import { parseInstant } from '../../src/projection/instant.js';
import { startWebPushTesting, type WebPushTesting } from '../nudge/web-push-testing-server.js';
import { putSubscription, SERVICE_KEY, startCaptured, type CapturedCoordinator } from '../faults/support.js';

let db: TestDb;
let wpt: WebPushTesting;
let c: CapturedCoordinator;
let fallback: FallbackSpy;
let bob: string;
let mallory: string;
const clients: WsClient[] = [];

beforeAll(async () => {
  db = await createTestDb();
  wpt = await startWebPushTesting();
  fallback = createFallbackSpy();
  c = await startCaptured(db.sql, { PUSH_ENDPOINT_ALLOWLIST: wpt.origin, RATE_LIMIT_PER_MINUTE: '10000' }, { fallback });
  bob = await c.token('bob');
  mallory = await c.token('mallory');
});

afterAll(async () => {
  await Promise.all(clients.map((cl) => cl.close()));
  await c?.stop();
  await wpt?.close();
  await db?.drop();
});

async function call(method: string, path: string, token: string | undefined, body?: unknown) {
  const res = await fetch(`${c.url}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? (JSON.parse(text) as unknown) : null };
}

describe('cross-user isolation', () => {
  it("every user route: Mallory cannot read or act on Bob's occurrences, missions or devices", async () => {
    const bobSocket = await connectClient(c.wsUrl, { token: bob, deviceId: 'bob-laptop' });
    const mallorySocket = await connectClient(c.wsUrl, { token: mallory, deviceId: 'bob-laptop' });
    clients.push(bobSocket, mallorySocket);
    const dueAt = inMs(200);
    await insertMissions(db.sql, [{ userId: 'bob', missionId: 'diary', nextRunAt: dueAt }]);
    const nudge = await bobSocket.next('mission-due');
    // Mallory can derive the id herself: it is public knowledge, not a capability.
    expect(nudge.iterationId).toBe(iterationIdFor('bob', 'diary', parseInstant(dueAt)!));
    await sleep(300);
    expect(mallorySocket.nudges()).toEqual([]);

    for (const action of ['claim', 'complete', 'release']) {
      const res = await call('POST', `/v1/occurrences/${nudge.iterationId}/${action}`, mallory, { deviceId: 'bob-laptop', reason: 'mine now' });
      expect(res.status, action).toBe(403);
      // The refusal says nothing about the occurrence (no status, holder, mission or times).
      expect(res.text).not.toMatch(/diary|bob|nudged|claimed|leaseExpiresAt/);
    }
    mallorySocket.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await mallorySocket.next('claim-result')).toMatchObject({ granted: false, reason: 'forbidden' });

    // Listings show only one's own; the operator listing needs the service key.
    expect((await call('GET', '/v1/occurrences?limit=500', mallory)).json).toEqual([]);
    expect((await call('GET', '/dev/sync/missions', mallory)).json).toEqual([]);
    expect((await call('GET', '/internal/occurrences?userId=bob', mallory)).status).toBe(401);
    const bobsOwn = (await call('GET', '/v1/occurrences', bob)).json as { iterationId: string; status: string }[];
    expect(bobsOwn).toEqual([expect.objectContaining({ iterationId: nudge.iterationId, status: 'nudged' })]);

    // Writing "as Bob" through the dev sync endpoint writes as Mallory: the token decides, never the body.
    const write = await call('POST', '/dev/sync/changes', mallory, {
      userId: 'bob',
      changes: [{ appId: 'ai', tableName: 'aiMissions', recordId: 'diary', op: 'update', data: { state: 'paused', userId: 'bob' }, fieldMeta: { state: new Date().toISOString(), userId: new Date().toISOString() } }],
    });
    expect(write.status).toBe(200);
    const rows = await db.sql<{ userId: string }[]>`SELECT user_id AS "userId" FROM sync_changes WHERE record_id = 'diary' ORDER BY created_at`;
    expect(rows.map((r) => r.userId)).toEqual(['bob', 'mallory']);
    await sleep(300);
    // Bob's mission is untouched (his occurrence still stands, nothing settled it as superseded).
    expect((await call('GET', '/v1/occurrences', bob)).json).toEqual([expect.objectContaining({ iterationId: nudge.iterationId, status: 'nudged' })]);

    // Bob still holds every right to his own occurrence.
    bobSocket.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await bobSocket.next('claim-result')).toMatchObject({ granted: true });
    expect((await call('POST', `/v1/occurrences/${nudge.iterationId}/complete`, bob, { deviceId: 'bob-laptop' })).status).toBe(200);
    // Offline from here on, so the next test reaches Bob by push.
    await Promise.all(clients.splice(0).map((cl) => cl.close()));
  });

  it("push: Mallory cannot delete Bob's subscription; taking over his endpoint moves it, and she still gets nothing of Bob's", async () => {
    const { publicKey } = (await call('GET', '/v1/push/vapid-public-key', undefined)).json as { publicKey: string };
    const bobSub = await wpt.subscribe(publicKey);
    const mallorySub = await wpt.subscribe(publicKey);
    expect((await putSubscription(c.url, bob, 'bob-phone', bobSub)).status).toBe(201);
    expect((await putSubscription(c.url, mallory, 'mallory-phone', mallorySub)).status).toBe(201);

    // A device id is per user: Mallory's DELETE of "bob-phone" finds nothing of hers.
    expect((await call('DELETE', '/v1/devices/bob-phone/push-subscription', mallory)).status).toBe(404);
    // Her PUT under Bob's device id creates her own subscription, it does not touch Bob's.
    expect((await putSubscription(c.url, mallory, 'bob-phone', mallorySub)).status).toBe(200);
    const owners = await db.sql<{ userId: string; deviceId: string }[]>`
      SELECT user_id AS "userId", device_id AS "deviceId" FROM mana_ai.push_subscriptions ORDER BY user_id, device_id`;
    expect(owners).toEqual([
      { userId: 'bob', deviceId: 'bob-phone' },
      { userId: 'mallory', deviceId: 'bob-phone' },
    ]);

    // Bob's mission is pushed to Bob's endpoint only; the payload is the nudge and nothing else.
    await insertMissions(db.sql, [{ userId: 'bob', missionId: 'taxes', nextRunAt: inMs(-500) }]);
    const bobPushes = await waitFor(async () => {
      const n = await wpt.notifications(bobSub.clientHash);
      return n.length > 0 ? n : undefined;
    }, 5000, "Bob's push");
    const payload = JSON.parse(bobPushes[0]!) as Record<string, unknown>;
    // attempt is the offer count, a number: nothing of the mission.
    expect(Object.keys(payload).sort()).toEqual(['attempt', 'dueAt', 'iterationId', 'missionId', 'type']);
    expect(payload['attempt']).toBe(1);
    expect(await wpt.notifications(mallorySub.clientHash)).toEqual([]);

    // Mallory presents Bob's endpoint (and keys) as her own: the endpoint moves to her.
    expect((await putSubscription(c.url, mallory, 'stolen', bobSub)).status).toBe(200);
    const moved = await db.sql<{ userId: string }[]>`SELECT user_id AS "userId" FROM mana_ai.push_subscriptions WHERE endpoint = ${bobSub.endpoint}`;
    expect(moved).toEqual([{ userId: 'mallory' }]);

    // Bob's next due mission no longer goes to that endpoint: with no subscription left he is planned for by the server.
    const before = (await wpt.notifications(bobSub.clientHash)).length;
    await insertMissions(db.sql, [{ userId: 'bob', missionId: 'garden', nextRunAt: inMs(-500) }]);
    await waitFor(() => fallback.calls.some((o) => o.userId === 'bob' && o.missionId === 'garden'), 5000, "Bob's occurrence at the fallback");
    await sleep(300);
    const after = await wpt.notifications(bobSub.clientHash);
    expect(after.length).toBe(before);
    expect(after.join('\n')).not.toContain('garden');
    // And nothing Mallory can list shows Bob's missions or occurrences.
    expect(JSON.stringify((await call('GET', '/v1/occurrences', mallory)).json)).not.toMatch(/bob|taxes|garden|diary/);
    expect((await call('GET', '/dev/sync/missions', mallory)).json).toEqual([
      expect.objectContaining({ id: 'diary', state: 'paused' }),
    ]);
  });
});
