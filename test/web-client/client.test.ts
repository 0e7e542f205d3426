import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createMemoryDedupStore } from '../../web-client/src/lib/dedup.js';
import { createMissionClient, type MissionClientEvent } from '../../web-client/src/index.js';
import type { FetchLike } from '../../web-client/src/lib/http.js';
import { FakeWebSocket, authenticateFake, fakeLocks } from './fakes.js';

const ID = '6a061268-1c1b-5d2e-a3f4-0123456789ab';

class FakeDocument extends EventTarget {
  visibilityState: DocumentVisibilityState = 'visible';
  setVisibility(v: DocumentVisibilityState) {
    this.visibilityState = v;
    this.dispatchEvent(new Event('visibilitychange'));
  }
}

function setup(occurrences: unknown[] = []) {
  const calls: string[] = [];
  const fetch: FetchLike = async (input, init) => {
    const path = new URL(input).pathname;
    calls.push(`${init?.method ?? 'GET'} ${path}`);
    if (path === '/v1/occurrences') return Response.json(occurrences);
    if (path.endsWith('/claim')) return Response.json({ granted: true, leaseExpiresAt: '2026-01-01T00:00:00Z' });
    return Response.json({ ok: true });
  };
  const planned: string[] = [];
  const events: MissionClientEvent[] = [];
  const client = createMissionClient({
    baseUrl: 'http://coord.test',
    getToken: async () => 'tok',
    deviceId: 'dev-1',
    planLocally: async (_m, it) => {
      planned.push(it);
      return { steps: 2 };
    },
    stageIteration: async () => undefined,
    hiddenPauseMs: 1_000,
    WebSocket: FakeWebSocket,
    fetch,
    dedup: createMemoryDedupStore(),
    locks: fakeLocks(),
  });
  client.onEvent((e) => events.push(e));
  return { client, calls, planned, events, types: () => events.map((e) => e.type) };
}

const connect = () => authenticateFake();

let doc: FakeDocument;
beforeEach(() => {
  vi.useFakeTimers();
  FakeWebSocket.instances = [];
  doc = new FakeDocument();
  vi.stubGlobal('document', doc);
  vi.stubGlobal('window', new EventTarget());
});
afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe('createMissionClient', () => {
  it('plans a nudge from the socket: claim → planLocally → complete', async () => {
    const t = setup();
    t.client.start();
    const ws = await connect();
    ws.receive({ type: 'mission-due', missionId: 'm-1', iterationId: ID, dueAt: '2026-11-25T10:00:00Z' });
    await vi.advanceTimersByTimeAsync(0);
    expect(t.planned).toEqual([ID]);
    expect(t.calls).toEqual(['GET /v1/occurrences', `POST /v1/occurrences/${ID}/claim`, `POST /v1/occurrences/${ID}/complete`]);
    expect(t.types()).toEqual(['connected', 'nudge', 'claimed', 'planned']);
    // The same nudge again (e.g. re-sent after a reconnect) is a duplicate.
    ws.receive({ type: 'mission-due', missionId: 'm-1', iterationId: ID, dueAt: '2026-11-25T10:00:00Z' });
    await vi.advanceTimersByTimeAsync(0);
    expect(t.planned).toEqual([ID]);
    expect(t.types().at(-1)).toBe('skipped');
    t.client.stop();
  });

  it('catches up on occurrences nudged while it was away', async () => {
    const t = setup([
      { iterationId: ID, missionId: 'm-1', dueAt: 'd', status: 'nudged', claimedBy: null, deadlineAt: '2999-01-01T00:00:00Z' },
      { iterationId: '7a061268-1c1b-5d2e-a3f4-0123456789ab', missionId: 'm-2', dueAt: 'd', status: 'completed', claimedBy: 'x' },
      { iterationId: '8a061268-1c1b-5d2e-a3f4-0123456789ab', missionId: 'm-3', dueAt: 'd', status: 'nudged', claimedBy: null, deadlineAt: '2000-01-01T00:00:00Z' },
    ]);
    t.client.start();
    await connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(t.planned).toEqual([ID]);
    expect(t.events.find((e) => e.type === 'nudge')).toMatchObject({ via: 'catch-up' });
    t.client.stop();
  });

  it('closes the socket when hidden long enough and reconnects when visible', async () => {
    const t = setup();
    t.client.start();
    const ws = await connect();
    doc.setVisibility('hidden');
    await vi.advanceTimersByTimeAsync(999);
    expect(ws.closed).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(ws.closed).toEqual({ code: 1000, reason: 'tab hidden' });
    expect(t.client.state()).toMatchObject({ connection: 'paused', hidden: true });
    doc.setVisibility('visible');
    await connect();
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(t.client.state().connection).toBe('open');
    t.client.stop();
  });

  it('a short hide does not close the socket', async () => {
    const t = setup();
    t.client.start();
    const ws = await connect();
    doc.setVisibility('hidden');
    await vi.advanceTimersByTimeAsync(500);
    doc.setVisibility('visible');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(ws.closed).toBeNull();
    t.client.stop();
    expect(ws.closed).toEqual({ code: 1000, reason: 'client stopped' });
  });
});
