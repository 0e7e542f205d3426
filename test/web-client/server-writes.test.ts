/**
 * The device side of "devices hear of a server write at once" and "the
 * user's time zone": the client turns a `mission-changed` frame into a
 * `mission-changed` event (the app pulls the mission then), and reports the
 * browser's IANA zone with its socket auth and its push subscription.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createMemoryDedupStore } from '../../web-client/src/lib/dedup.js';
import { createMissionClient, type MissionClientEvent, type MissionClientOptions } from '../../web-client/src/index.js';
import { parseServerFrame } from '../../web-client/src/lib/frames.js';
import { subscriptionBody } from '../../web-client/src/lib/push.js';
import { localTimeZone } from '../../web-client/src/lib/time-zone.js';
import { FakeWebSocket, fakeLocks } from './fakes.js';

const ID = '6a061268-1c1b-5d2e-a3f4-0123456789ab';

function client(extra: Partial<MissionClientOptions> = {}) {
  const events: MissionClientEvent[] = [];
  const c = createMissionClient({
    baseUrl: 'http://coord.test',
    getToken: async () => 'tok',
    deviceId: 'dev-1',
    planLocally: async () => ({ steps: 0 }),
    stageIteration: async () => undefined,
    WebSocket: FakeWebSocket,
    fetch: async () => Response.json([]),
    dedup: createMemoryDedupStore(),
    locks: fakeLocks(),
    catchUp: false,
    ...extra,
  });
  c.onEvent((e) => events.push(e));
  return { c, events };
}

async function connect(): Promise<FakeWebSocket> {
  await vi.advanceTimersByTimeAsync(0);
  const ws = FakeWebSocket.last();
  ws.open();
  ws.receive({ type: 'auth-ok', userId: 'u-1', deviceId: 'dev-1' });
  await vi.advanceTimersByTimeAsync(0);
  return ws;
}

beforeEach(() => {
  vi.useFakeTimers();
  FakeWebSocket.instances = [];
});
afterEach(() => {
  vi.useRealTimers();
});

describe('mission-changed', () => {
  it('becomes a mission-changed event with the mission and iteration, and nothing is planned or claimed', async () => {
    const { c, events } = client();
    c.start();
    const ws = await connect();
    ws.receive({ type: 'mission-changed', missionId: 'm-1', iterationId: ID });
    ws.receive({ type: 'mission-changed', missionId: 'm-2' });
    await vi.advanceTimersByTimeAsync(0);
    expect(events.filter((e) => e.type === 'mission-changed').map(({ at: _at, ...e }) => e)).toEqual([
      { type: 'mission-changed', missionId: 'm-1', iterationId: ID },
      { type: 'mission-changed', missionId: 'm-2' },
    ]);
    expect(events.map((e) => e.type)).toEqual(['connected', 'mission-changed', 'mission-changed']);
    c.stop();
  });

  it.each([
    [{ type: 'mission-changed', missionId: 'm', iterationId: ID }, { type: 'mission-changed', missionId: 'm', iterationId: ID }],
    [{ type: 'mission-changed', missionId: 'm', iterationId: 'not-a-uuid' }, { type: 'mission-changed', missionId: 'm' }],
    [{ type: 'mission-changed', missionId: '' }, null],
    [{ type: 'mission-changed' }, null],
  ])('parses %j as %j', (frame, expected) => {
    expect(parseServerFrame(JSON.stringify(frame))).toEqual(expected);
  });
});

describe('the time zone', () => {
  it("the auth frame carries the browser's zone by default", async () => {
    const { c } = client();
    c.start();
    const ws = await connect();
    expect(localTimeZone()).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone);
    expect(ws.sent[0]).toEqual({ type: 'auth', token: 'tok', deviceId: 'dev-1', contextId: expect.any(String), timeZone: localTimeZone() });
    c.stop();
  });

  it('a zone the app gives wins; none given and none known sends no field', async () => {
    const berlin = client({ timeZone: () => 'Europe/Berlin' });
    berlin.c.start();
    expect((await connect()).sent[0]).toMatchObject({ timeZone: 'Europe/Berlin' });
    berlin.c.stop();
    const none = client({ timeZone: () => undefined });
    none.c.start();
    expect((await connect()).sent[0]).toEqual({ type: 'auth', token: 'tok', deviceId: 'dev-1', contextId: expect.any(String) });
    none.c.stop();
  });

  it('the push subscription body carries it when known', () => {
    const sub = {
      endpoint: 'https://push.test/e',
      toJSON: () => ({ endpoint: 'https://push.test/e', expirationTime: null, keys: { p256dh: 'p', auth: 'a' } }),
      unsubscribe: async () => true,
    };
    expect(subscriptionBody(sub, 'Asia/Kathmandu')).toEqual({ endpoint: 'https://push.test/e', expirationTime: null, keys: { p256dh: 'p', auth: 'a' }, timeZone: 'Asia/Kathmandu' });
    expect(subscriptionBody(sub)).toEqual({ endpoint: 'https://push.test/e', expirationTime: null, keys: { p256dh: 'p', auth: 'a' } });
  });
});
