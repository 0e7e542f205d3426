/**
 * The offer count: how many times an occurrence was offered to the user's
 * devices, kept in the ledger and carried as `attempt` by every nudge (socket
 * frames, the pending list on reconnect, push payloads). A device that stood
 * aside for an earlier offer (the occurrence was held or done elsewhere)
 * tells a re-offer (after a release, an expiry or a refusal by the server)
 * from a repeat by a higher number; without it, its dedup mark blocked the
 * retries the server asked for.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FallbackPlanner } from '../../src/schedule/interfaces.js';
import { getOccurrence } from '../../src/schedule/occurrences.js';
import { createOccurrences, markNudged, markWaitingMany } from '../../src/schedule/transitions.js';
import { claimForDevices, releaseForDevice } from '../../src/schedule/device-transitions.js';
import { reason } from '../../src/schedule/reasons.js';
import { pushMessages } from '../../src/nudge/push-payload.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { connectClient, inMs, insertMissions, startTestCoordinator, type TestCoordinator, type WsClient } from '../support/coordinator.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db.drop();
});

const DUE = '2026-03-01T08:00:00.000000Z';

describe('the ledger counts offers', () => {
  it('a socket nudge or a wait at creation is one offer; every later nudge and hand-back to waiting adds one; a release does not', async () => {
    const starts = ['ws', 'wait', 'created', 'server'] as const;
    const created = await createOccurrences(
      db.sql,
      starts.map((s) => ({ userId: `offers-${s}`, missionId: 'm', nextRunAt: DUE })),
      {
        startAs: (d) => d.userId.slice('offers-'.length) as (typeof starts)[number],
        wsDeadlineMs: 20_000,
        server: { holder: 'server:x', leaseMs: 60_000, reason: reason('no-device') },
        wait: { reason: reason('no-planner'), retryInMs: 60_000 },
      },
    );
    const byStart = new Map(created.map((o) => [o.userId.slice('offers-'.length), o]));
    expect(Object.fromEntries([...byStart].map(([s, o]) => [s, o.offers]))).toEqual({ ws: 1, wait: 1, created: 0, server: 0 });
    for (const o of created) expect(o).toEqual(await getOccurrence(db.sql, o.iterationId));

    const push = byStart.get('created')!;
    expect((await markNudged(db.sql, [push.iterationId], 'push', 60_000))[0]!.offers).toBe(1);
    const claim = { iterationId: push.iterationId, userId: push.userId, deviceId: 'phone/sw-1' };
    expect((await claimForDevices(db.sql, [claim], 60_000)).map((r) => r.granted)).toEqual([true]);
    expect(await releaseForDevice(db.sql, claim, 'plan-failed', 'device-plan-failed')).toMatchObject({ status: 'nudged', reason: 'device-plan-failed' });
    expect((await getOccurrence(db.sql, push.iterationId))!.offers).toBe(1);
    // The server refuses it (an encrypted mission): handed back to waiting, a new offer.
    const [waiting] = await markWaitingMany(db.sql, [{ iterationId: push.iterationId, retryInMs: 60_000 }], { from: ['nudged'], reason: reason('encrypted') });
    expect(waiting!.offers).toBe(2);
  });

  it('push payloads carry each nudge\'s attempt, alone and grouped', () => {
    const frame = (i: number, attempt: number) => ({ type: 'mission-due' as const, missionId: `m${i}`, iterationId: `00000000-0000-4000-8000-00000000000${i}`, dueAt: DUE, attempt });
    expect(pushMessages([frame(1, 3)])[0]!.payload).toEqual(frame(1, 3));
    const [group] = pushMessages([frame(1, 2), frame(2, 1)]);
    expect(group!.payload).toMatchObject({ attempt: 2, missions: [{ missionId: 'm1', attempt: 2 }, { missionId: 'm2', attempt: 1 }] });
  });
});

describe('nudges carry the offer as attempt', () => {
  let c: TestCoordinator;
  const clients: WsClient[] = [];
  // Server planning off: an occurrence nobody plans goes back to waiting for a device.
  const noPlanner: FallbackPlanner = { enabled: false, plan: () => undefined };

  beforeAll(async () => {
    c = await startTestCoordinator(db.sql, { RATE_LIMIT_PER_MINUTE: '100000' }, { fallback: noPlanner });
  });
  afterAll(async () => {
    await Promise.all(clients.map((cl) => cl.close()));
    await c.stop();
  });

  it('the first nudge is attempt 1; after a release and a wait the next nudge, the pending list and the listing say 3', async () => {
    const token = await c.token('offers-user');
    const ws = await connectClient(c.wsUrl, { token, deviceId: 'laptop', contextId: 'tab-1' });
    clients.push(ws);
    await insertMissions(db.sql, [{ userId: 'offers-user', missionId: 'm-offers', nextRunAt: inMs(50) }]);
    const first = await ws.next('mission-due');
    expect(first.attempt).toBe(1);

    const post = (action: string, body: unknown) =>
      fetch(`${c.url}/v1/occurrences/${first.iterationId}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('claim', { deviceId: 'laptop', contextId: 'tab-1' })).status).toBe(200);
    expect((await post('release', { deviceId: 'laptop', contextId: 'tab-1', code: 'plan-failed' })).status).toBe(200);
    // The release's deadline is now: the sweep takes it, and with no server planner it waits (offer 2).
    const waited = await waitForRow(first.iterationId, (o) => o.status === 'waiting');
    expect(waited.offers).toBe(2);
    // Its retry time comes: routed again to the live socket (offer 3).
    await db.sql`UPDATE mana_ai.occurrences SET next_attempt_at = now() WHERE iteration_id = ${first.iterationId}`;
    const again = await ws.next('mission-due', (f) => f.iterationId === first.iterationId && f.attempt !== 1);
    expect(again.attempt).toBe(3);

    const late = await connectClient(c.wsUrl, { token, deviceId: 'phone' });
    clients.push(late);
    expect(await late.next('mission-due')).toMatchObject({ iterationId: first.iterationId, attempt: 3 });
    const list = (await (await fetch(`${c.url}/v1/occurrences`, { headers: { authorization: `Bearer ${token}` } })).json()) as { iterationId: string; offers: number }[];
    expect(list.find((o) => o.iterationId === first.iterationId)?.offers).toBe(3);
  });
});

async function waitForRow(iterationId: string, done: (o: { status: string; offers: number }) => boolean) {
  const until = Date.now() + 5000;
  for (;;) {
    const o = await getOccurrence(db.sql, iterationId);
    if (o && done(o)) return o;
    if (Date.now() > until) throw new Error(`occurrence ${iterationId}: ${JSON.stringify(o)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
