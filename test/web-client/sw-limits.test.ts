/**
 * Every push shows a notification, within the time limit the module
 * enforces, whatever hangs or says "signed out" before (Chrome shows its own
 * notice for a push that shows none, and may take the permission away):
 * an options source that resolves to null (signed out) → a neutral
 * notification naming nothing, and no claim; a hung options source, a hung
 * getToken, a hung planner → a notification by the limit, the planner's
 * signal aborted and the occurrence given back.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createMemoryDedupStore } from '../../web-client/src/lib/dedup.js';
import type { FetchLike } from '../../web-client/src/lib/http.js';
import { PlanAborted } from '../../web-client/src/lib/lease.js';
import { handlePush, type PushHandlerOptions } from '../../web-client/src/sw.js';

const ID = '6a061268-1c1b-5d2e-a3f4-0123456789ab';
const payload = { type: 'mission-due', missionId: 'm-secret', iterationId: ID, dueAt: '2026-11-25T10:00:00Z', attempt: 1 };
const g = globalThis as unknown as Record<string, unknown>;

let shown: { title: string; options: NotificationOptions; at: number }[];
let calls: string[];
const fetch: FetchLike = async (input, init) => {
  const path = new URL(input).pathname;
  calls.push(`${path.split('/').at(-1)} ${init?.body ?? ''}`);
  return Response.json(path.endsWith('/claim') ? { granted: true, leaseMs: 600_000 } : { ok: true });
};

function push(options: Parameters<typeof handlePush>[1]): { done: Promise<unknown> } {
  let done: Promise<unknown> = Promise.resolve();
  const event = { data: { text: () => JSON.stringify(payload) }, waitUntil: (p: Promise<unknown>) => void (done = p) } as unknown as PushEvent;
  handlePush(event, options);
  return { done };
}

const session = (over: Partial<PushHandlerOptions> = {}): PushHandlerOptions => ({
  getToken: async () => 'token',
  deviceId: 'phone',
  fetch,
  dedup: createMemoryDedupStore(),
  locks: null,
  planInWorker: async () => ({ steps: 2 }),
  ...over,
});

beforeEach(() => {
  vi.useFakeTimers();
  shown = [];
  calls = [];
  g['registration'] = { scope: 'https://app.test/', showNotification: async (title: string, options: NotificationOptions) => void shown.push({ title, options, at: Date.now() }) };
  g['location'] = { origin: 'https://app.test' };
});
afterEach(() => {
  vi.useRealTimers();
  delete g['registration'];
  delete g['location'];
});

describe('handlePush within its limits', () => {
  it('signed out (the options source says null): a neutral notification naming nothing, and no claim', async () => {
    const { done } = push(async () => null);
    await vi.advanceTimersByTimeAsync(0);
    await done;
    expect(calls).toEqual([]);
    expect(shown).toHaveLength(1);
    expect(shown[0]!.options).toMatchObject({ body: 'Something is due — open to see', tag: 'mana-ai' });
    expect(JSON.stringify(shown[0])).not.toContain('m-secret');
    expect(JSON.stringify(shown[0])).not.toContain(ID);
  });

  it('an options source that never answers: a notification after 5 s, no claim', async () => {
    const { done } = push(() => new Promise(() => undefined));
    await vi.advanceTimersByTimeAsync(5_000);
    await done;
    expect(shown.map((s) => s.options.body)).toEqual(['Mission due — open to plan']);
    expect(calls).toEqual([]);
  });

  it('a getToken that never answers: a notification within the limit, nothing claimed', async () => {
    const started = Date.now();
    const { done } = push(session({ getToken: () => new Promise(() => undefined), timeLimitMs: 30_000 }));
    await vi.advanceTimersByTimeAsync(30_000);
    expect(shown).toHaveLength(1);
    expect(shown[0]!.at - started).toBeLessThanOrEqual(30_000);
    expect(shown[0]!.options.body).toBe('Mission due — open to plan');
    // What was still asking for a token ends on its own time box (10 s each).
    await vi.advanceTimersByTimeAsync(10_000);
    await done;
    expect(calls).toEqual([]);
  });

  it('a planner that hangs: the notification at the limit, its signal aborted, the occurrence given back with plan-timeout', async () => {
    let signal: AbortSignal | undefined;
    const started = Date.now();
    const { done } = push(
      session({
        timeLimitMs: 20_000,
        planInWorker: (_m, _i, o) => {
          signal = o.signal;
          return new Promise(() => undefined);
        },
      }),
    );
    await vi.advanceTimersByTimeAsync(20_000);
    await done;
    expect(shown).toHaveLength(1);
    expect(shown[0]!.at - started).toBe(20_000);
    expect(signal?.aborted).toBe(true);
    expect((signal?.reason as PlanAborted).code).toBe('timeout');
    expect(calls.map((c) => c.split(' ')[0])).toEqual(['claim', 'release']);
    expect(calls[1]).toContain('"code":"plan-timeout"');
  });

  it('claims as a context of its own, never as the bare device', async () => {
    const { done } = push(session());
    await vi.advanceTimersByTimeAsync(0);
    await done;
    const claim = JSON.parse(calls[0]!.slice('claim '.length)) as { deviceId: string; contextId: string };
    expect(claim.deviceId).toBe('phone');
    expect(claim.contextId).toMatch(/^sw-/);
    expect(shown.map((s) => s.options.body)).toEqual(['2 proposals ready']);
  });
});
