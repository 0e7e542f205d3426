/**
 * The client as a whole (createMissionClient), with fake clocks, a fake
 * socket and a fake coordinator that keeps a claim ledger the way the real
 * one does (one holder per occurrence, the device id and context id; the
 * holder may claim again): contexts of one browser are granted one at a
 * time, a socket that cannot claim is closed, catch-up picks up what the
 * server handed back and what this context holds, a failing store degrades
 * to memory, and signOut leaves nothing of the user behind.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createMemoryDedupStore, type DedupStore } from '../../web-client/src/lib/dedup.js';
import { createMissionClient, type MissionClientEvent, type MissionClientOptions } from '../../web-client/src/index.js';
import type { FetchLike } from '../../web-client/src/lib/http.js';
import type { PushManagerLike } from '../../web-client/src/lib/push.js';
import { FakeWebSocket, authenticateFake, fakeJwt } from './fakes.js';

const ID = '6a061268-1c1b-5d2e-a3f4-0123456789ab';
const nudge = { type: 'mission-due', missionId: 'm-1', iterationId: ID, dueAt: '2026-11-25T10:00:00Z' };

/** The coordinator's claim rules over a fake fetch; `rows` is what GET /v1/occurrences lists. */
function fakeCoordinator(rows: (q: URLSearchParams, holders: Map<string, string>) => unknown[] = () => []) {
  const holders = new Map<string, string>();
  const calls: { method: string; path: string; body?: Record<string, string> }[] = [];
  const fetch: FetchLike = async (input, init) => {
    const url = new URL(input);
    const body = init?.body ? (JSON.parse(String(init.body)) as Record<string, string>) : undefined;
    calls.push({ method: init?.method ?? 'GET', path: url.pathname, ...(body ? { body } : {}) });
    if (url.pathname === '/v1/occurrences') return Response.json(rows(url.searchParams, holders));
    if (url.pathname.endsWith('/push-subscription')) return new Response(null, { status: 204 });
    const [, , , id, action] = url.pathname.split('/');
    const claimant = `${body!['deviceId']}/${body!['contextId']}`;
    const holder = holders.get(id!);
    if (action === 'claim') {
      if (holder !== undefined && holder !== claimant) return Response.json({ error: { code: 'held', message: 'held (device)' } }, { status: 409 });
      holders.set(id!, claimant);
      return Response.json({ granted: true, leaseExpiresAt: new Date(Date.now() + 600_000).toISOString(), leaseMs: 600_000 });
    }
    if (holder !== claimant) return Response.json({ error: { code: 'not-holder', message: '' } }, { status: 409 });
    if (action === 'release') holders.delete(id!);
    return Response.json({ ok: true, status: action === 'release' ? 'nudged' : 'completed' });
  };
  return { fetch, calls, holders, claims: () => calls.filter((c) => c.path.endsWith('/claim')) };
}

const failingStore = (): DedupStore => {
  const no = () => Promise.reject(new DOMException('The database connection is closing.', 'InvalidStateError'));
  return { get: no, markUnless: no, set: no, forget: no, clear: no, purge: no, close: () => undefined };
};

function client(overrides: Partial<MissionClientOptions> & { fetch: FetchLike }) {
  const events: MissionClientEvent[] = [];
  const planned: string[] = [];
  const c = createMissionClient({
    baseUrl: 'http://coord.test',
    getToken: async () => fakeJwt('u-1'),
    deviceId: 'dev-1',
    planLocally: async (_m, it) => {
      planned.push(it);
      await new Promise((r) => setTimeout(r, 50));
      return { steps: 1 };
    },
    WebSocket: FakeWebSocket,
    dedup: createMemoryDedupStore(),
    locks: null,
    ...overrides,
  });
  c.onEvent((e) => events.push(e));
  return { c, events, planned, types: () => events.map((e) => e.type) };
}

const connect = (given?: FakeWebSocket) => authenticateFake({ expiresInMs: 900_000 }, given);

beforeEach(() => {
  vi.useFakeTimers();
  FakeWebSocket.instances = [];
});
afterEach(() => {
  vi.useRealTimers();
});

describe('contexts of one browser', () => {
  it('two tabs with no Web Locks and a failing dedup store: the server grants one context, one plan', async () => {
    const server = fakeCoordinator();
    const tabs = [client({ fetch: server.fetch, dedup: failingStore() }), client({ fetch: server.fetch, dedup: failingStore() })];
    for (const t of tabs) t.c.start();
    await vi.advanceTimersByTimeAsync(0);
    for (const ws of FakeWebSocket.instances) await connect(ws);
    for (const ws of FakeWebSocket.instances) ws.receive(nudge);
    await vi.advanceTimersByTimeAsync(100);
    expect(tabs.flatMap((t) => t.planned)).toEqual([ID]);
    const contexts = server.claims().map((c) => c.body!['contextId']);
    expect(new Set(contexts).size).toBe(2);
    expect(tabs.map((t) => t.types().filter((x) => ['planned', 'elsewhere'].includes(x))).flat().sort()).toEqual(['elsewhere', 'planned']);
    // Each tab said once that its records live in memory now.
    for (const t of tabs) expect(t.events.filter((e) => e.type === 'warning')).toEqual([expect.objectContaining({ code: 'storage-fallback' })]);
    for (const t of tabs) t.c.stop();
  });
});

describe('a socket is live only while it can claim', () => {
  it('closes the socket when a claim finds no token (the session died), so the server pushes instead', async () => {
    let session = true;
    const server = fakeCoordinator();
    const t = client({ fetch: server.fetch, getToken: async () => (session ? fakeJwt('u-1') : Promise.reject(new Error('signed out elsewhere'))) });
    t.c.start();
    const ws = await connect();
    session = false;
    ws.receive(nudge);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(ws.closed).toEqual({ code: 4002, reason: 'no token' });
    expect(t.planned).toEqual([]);
    expect(t.c.state().connection).not.toBe('open');
    t.c.stop();
  });

  it('closes the socket when the server refuses the token a claim carried (401)', async () => {
    const server = fakeCoordinator();
    const refusing: FetchLike = async (input, init) =>
      new URL(input).pathname.endsWith('/claim') ? Response.json({ error: { code: 'expired', message: 'token expired' } }, { status: 401 }) : server.fetch(input, init);
    const t = client({ fetch: refusing });
    t.c.start();
    const ws = await connect();
    ws.receive(nudge);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(ws.closed).toEqual({ code: 4002, reason: 'token refused' });
    expect(t.planned).toEqual([]);
    t.c.stop();
  });
});

describe('catch-up', () => {
  it('re-claims what this context holds (the answer was lost) and takes what the server handed back, skipping the rest', async () => {
    const HELD = '7a061268-1c1b-5d2e-a3f4-0123456789ab';
    const BACK = '8a061268-1c1b-5d2e-a3f4-0123456789ab';
    const OTHER = '9a061268-1c1b-5d2e-a3f4-0123456789ab';
    const dedup = createMemoryDedupStore();
    // Stood aside for BACK's first offer; the server refused it and handed it back (offer 2).
    await dedup.set(BACK, { state: 'elsewhere', attempt: 1 });
    const server = fakeCoordinator((q, holders) => {
      const me = `${q.get('deviceId')}/${q.get('contextId')}`;
      holders.set(HELD, me);
      holders.set(OTHER, 'dev-1/another-tab');
      return [
        { iterationId: HELD, missionId: 'm-held', dueAt: 'd', status: 'claimed', claimedBy: 'device', mine: true, offers: 1 },
        { iterationId: BACK, missionId: 'm-back', dueAt: 'd', status: 'waiting', claimedBy: null, mine: false, offers: 2 },
        { iterationId: OTHER, missionId: 'm-other', dueAt: 'd', status: 'claimed', claimedBy: 'device', mine: false, offers: 1 },
      ];
    });
    const t = client({ fetch: server.fetch, dedup });
    t.c.start();
    await connect();
    await vi.advanceTimersByTimeAsync(200);
    expect(t.planned.sort()).toEqual([HELD, BACK].sort());
    expect(server.calls[0]!.path).toBe('/v1/occurrences');
    expect(server.claims().map((c) => c.path)).not.toContain(`/v1/occurrences/${OTHER}/claim`);
    t.c.stop();
  });
});

describe('signOut', () => {
  it("gives back what it plans, closes the socket, unsubscribes push here and on the server, and forgets this user's records only", async () => {
    const server = fakeCoordinator();
    const dedup = createMemoryDedupStore();
    await dedup.set('other-user-it', { state: 'planned', user: 'u-2' });
    const unsubscribed: string[] = [];
    const pushManager: PushManagerLike = {
      getSubscription: async () => ({ endpoint: 'https://push.test/1', toJSON: () => ({}), unsubscribe: async () => (unsubscribed.push('1'), true) }),
      subscribe: async () => {
        throw new Error('not here');
      },
    };
    const t = client({ fetch: server.fetch, dedup, planLocally: (_m, it, { signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))) });
    t.c.start();
    const ws = await connect();
    ws.receive(nudge);
    await vi.advanceTimersByTimeAsync(10);
    expect(server.holders.get(ID)).toMatch(/^dev-1\/tab-/);
    await dedup.set('done-it', { state: 'planned', user: 'u-1' });

    const out = t.c.signOut({ pushManager });
    await vi.advanceTimersByTimeAsync(100);
    await out;
    const release = server.calls.find((c) => c.path.endsWith('/release'));
    expect(release?.body).toMatchObject({ code: 'cancelled', deviceId: 'dev-1' });
    expect(server.holders.has(ID)).toBe(false);
    expect(ws.closed).toEqual({ code: 1000, reason: 'client stopped' });
    expect(unsubscribed).toEqual(['1']);
    expect(server.calls.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual(['/v1/devices/dev-1/push-subscription']);
    expect(await dedup.get('done-it')).toBeUndefined();
    expect(await dedup.get(ID)).toBeUndefined();
    expect(await dedup.get('other-user-it')).toMatchObject({ user: 'u-2' });
    expect(t.events.at(-1)).toMatchObject({ type: 'signed-out', cleared: 2 });
    expect(t.c.state()).toMatchObject({ running: false, push: 'disabled' });
  });
});
