/**
 * One nudge in one context (lib/run-nudge.ts), with the module's fake clocks:
 * the server decides who plans, a dedup mark only spares a claim while the
 * occurrence is held or done elsewhere for that offer, lost answers are asked
 * again, planning runs under a renewed lease with a signal, completion is
 * retried until it lands, and what goes back to the server is a code, never
 * the planner's text.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createMemoryDedupStore } from '../../web-client/src/lib/dedup.js';
import type { MissionClientEventBody } from '../../web-client/src/lib/events.js';
import { PlanAborted } from '../../web-client/src/lib/lease.js';
import { classifyClaim, type ClaimOutcome } from '../../web-client/src/lib/occurrences.js';
import { runNudge, type PlanFn } from '../../web-client/src/lib/run-nudge.js';
import { fakeLocks, fakeOccurrences } from './fakes.js';

const ID = '6a061268-1c1b-5d2e-a3f4-0123456789ab';
const nudge = { type: 'mission-due' as const, missionId: 'm-1', iterationId: ID, dueAt: '2026-11-25T10:00:00Z' };
const granted: ClaimOutcome = { kind: 'granted', leaseExpiresAt: 'L' };
const failed = (status = 503): ClaimOutcome => ({ kind: 'failed', error: Object.assign(new Error(`${status}`), { status }) });

function setup(claim: Parameters<typeof fakeOccurrences>[0], plan: PlanFn, opts: Parameters<typeof fakeOccurrences>[1] = {}, extra: { signal?: AbortSignal; planTimeoutMs?: number } = {}) {
  const events: MissionClientEventBody[] = [];
  const dedup = createMemoryDedupStore();
  const occurrences = fakeOccurrences(claim, opts);
  const locks = fakeLocks();
  const deps = { dedup, occurrences, locks, plan, emit: (e: MissionClientEventBody) => events.push(e), user: () => 'u-1', ...extra };
  return { events, dedup, occurrences, locks, deps, types: () => events.map((e) => e.type) };
}

/** A script of answers, the last one repeated. */
const answers = (...list: ClaimOutcome[]) => {
  let i = 0;
  return () => list[Math.min(i++, list.length - 1)]!;
};

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('classifyClaim', () => {
  it('reads the answers; 403 (another user’s) is final like 404/409/410, never retried', () => {
    expect(classifyClaim({ status: 200, ok: true, body: { granted: true, leaseExpiresAt: 'L', leaseMs: 5000 } })).toEqual({ kind: 'granted', leaseExpiresAt: 'L', leaseMs: 5000 });
    expect(classifyClaim({ status: 200, ok: true, body: { granted: false } })).toMatchObject({ kind: 'elsewhere' });
    expect(classifyClaim({ status: 409, ok: false, body: { error: { code: 'held', message: '' } } })).toEqual({ kind: 'elsewhere', status: 409, code: 'held' });
    expect(classifyClaim({ status: 410, ok: false, body: undefined })).toEqual({ kind: 'elsewhere', status: 410, code: 'http_410' });
    expect(classifyClaim({ status: 404, ok: false, body: undefined })).toMatchObject({ kind: 'elsewhere', status: 404 });
    expect(classifyClaim({ status: 403, ok: false, body: { error: { code: 'forbidden', message: '' } } })).toEqual({ kind: 'elsewhere', status: 403, code: 'forbidden' });
    expect(classifyClaim({ status: 503, ok: false, body: undefined })).toMatchObject({ kind: 'failed' });
    expect(classifyClaim({ status: 429, ok: false, body: undefined })).toMatchObject({ kind: 'failed' });
    expect(classifyClaim({ status: 401, ok: false, body: undefined })).toMatchObject({ kind: 'failed' });
  });
});

describe('runNudge', () => {
  it('claims, plans, marks planned and completes', async () => {
    const t = setup(granted, async () => ({ steps: 3 }));
    expect(await runNudge(nudge, t.deps)).toEqual({ kind: 'planned', steps: 3, completed: true });
    expect(t.occurrences.calls).toEqual([`claim ${ID}`, `complete ${ID}`]);
    expect(t.types()).toEqual(['claimed', 'planned']);
    expect(await t.dedup.get(ID)).toMatchObject({ state: 'planned', attempt: 1, user: 'u-1' });
  });

  it('handles a second nudge for the same offer as a duplicate', async () => {
    const t = setup(granted, async () => ({ steps: 1 }));
    await runNudge(nudge, t.deps);
    expect(await runNudge(nudge, t.deps)).toEqual({ kind: 'duplicate', state: 'planned' });
    expect(t.occurrences.calls.filter((c) => c.startsWith('claim'))).toHaveLength(1);
  });

  it('plans once when contexts of this browser race (the Web Lock)', async () => {
    let plans = 0;
    const t = setup(granted, async () => {
      plans++;
      await new Promise((r) => setTimeout(r, 10));
      return { steps: 1 };
    });
    const run = Promise.all([runNudge(nudge, t.deps), runNudge(nudge, t.deps), runNudge(nudge, t.deps)]);
    await vi.advanceTimersByTimeAsync(10);
    expect(plans).toBe(1);
    expect((await run).map((o) => o.kind).sort()).toEqual(['locked', 'locked', 'planned']);
  });

  it('marks 409/410/403 as done elsewhere for that offer and does not plan', async () => {
    for (const [status, code] of [[409, 'held'], [410, 'gone'], [403, 'forbidden']] as const) {
      let planned = false;
      const t = setup({ kind: 'elsewhere', status, code }, async () => void (planned = true));
      expect(await runNudge({ ...nudge, attempt: 2 }, t.deps)).toEqual({ kind: 'elsewhere', status, code });
      expect(planned).toBe(false);
      expect(t.occurrences.calls).toEqual([`claim ${ID}`]);
      expect(await t.dedup.get(ID)).toMatchObject({ state: 'elsewhere', attempt: 2 });
    }
  });
});

describe('dedup follows the server', () => {
  it('takes an occurrence again when the server re-offers it (a higher attempt), after a release or a refusal', async () => {
    const t = setup(answers({ kind: 'elsewhere', status: 409, code: 'held' }, granted), async () => ({ steps: 2 }));
    expect((await runNudge({ ...nudge, attempt: 1 }, t.deps)).kind).toBe('elsewhere');
    // The same offer again (a re-sent frame, the pending list on reconnect): spared.
    expect((await runNudge({ ...nudge, attempt: 1 }, t.deps)).kind).toBe('duplicate');
    // The server handed it back (an encrypted mission it cannot plan went to waiting and is nudged again).
    expect(await runNudge({ ...nudge, attempt: 2 }, t.deps)).toEqual({ kind: 'planned', steps: 2, completed: true });
    expect(t.occurrences.calls.filter((c) => c.startsWith('claim'))).toHaveLength(2);
  });

  it('after planning here failed and was given back, a re-offer is planned here again', async () => {
    let calls = 0;
    const t = setup(granted, async () => {
      if (++calls === 1) throw new Error('no key for mission');
      return { steps: 1 };
    });
    expect((await runNudge({ ...nudge, attempt: 1 }, t.deps)).kind).toBe('released');
    expect((await runNudge({ ...nudge, attempt: 2 }, t.deps)).kind).toBe('planned');
  });

  it('a mark left by a context that died before its claim landed does not block (the lock is free; the claim tells)', async () => {
    const t = setup(granted, async () => ({ steps: 1 }));
    await t.dedup.set(ID, { state: 'claimed', attempt: 1 });
    await t.dedup.set(`other`, { state: 'seen' });
    expect((await runNudge(nudge, t.deps)).kind).toBe('planned');
  });

  it('a claim whose answer was lost (timeout, 5xx, 429) is asked again as the same context, and planned when granted', async () => {
    const t = setup(answers(failed(0), failed(503), failed(429), granted), async () => ({ steps: 1 }));
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(1000 + 2000 + 4000);
    expect(await run).toEqual({ kind: 'planned', steps: 1, completed: true });
    expect(t.occurrences.calls.filter((c) => c.startsWith('claim'))).toHaveLength(4);
  });

  it('gives up after the retries with no mark that would block a later nudge', async () => {
    const t = setup(failed(503), async () => ({ steps: 1 }));
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(7000);
    expect((await run).kind).toBe('failed');
    expect(await t.dedup.get(ID)).toBeUndefined();
  });
});

describe('planning with a deadline', () => {
  it('hands the planner a signal and renews the lease while it runs (at half of what is left)', async () => {
    let signal: AbortSignal | undefined;
    const t = setup({ kind: 'granted', leaseMs: 10_000 }, async (_m, _i, o) => {
      signal = o.signal;
      await new Promise((r) => setTimeout(r, 25_000));
      return { steps: 1 };
    });
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(0);
    expect(signal?.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(t.occurrences.calls).toEqual([`claim ${ID}`]);
    await vi.advanceTimersByTimeAsync(1);
    expect(t.occurrences.calls).toEqual([`claim ${ID}`, `claim ${ID}`]);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(await run).toEqual({ kind: 'planned', steps: 1, completed: true });
    expect(signal?.aborted).toBe(false);
    expect(t.occurrences.calls.filter((c) => c.startsWith('claim')).length).toBeGreaterThanOrEqual(4);
  });

  it('aborts the planner when a renewal is refused (the lease is lost): no complete, no release', async () => {
    let signal: AbortSignal | undefined;
    const t = setup(answers({ kind: 'granted', leaseMs: 10_000 }, { kind: 'elsewhere', status: 409, code: 'held' }), (_m, _i, o) => {
      signal = o.signal;
      return new Promise(() => undefined);
    });
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await run).toEqual({ kind: 'lost' });
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(PlanAborted);
    expect((signal?.reason as PlanAborted).code).toBe('lost');
    expect(t.occurrences.calls).toEqual([`claim ${ID}`, `claim ${ID}`]);
  });

  it('aborts the planner when renewals get no answer until the lease is nearly out', async () => {
    const t = setup(answers({ kind: 'granted', leaseMs: 8_000 }, failed()), () => new Promise(() => undefined));
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(8_000);
    expect(await run).toEqual({ kind: 'lost' });
  });

  it('stops a planner past the time limit and gives the occurrence back with plan-timeout', async () => {
    let signal: AbortSignal | undefined;
    const t = setup(granted, (_m, _i, o) => {
      signal = o.signal;
      return new Promise(() => undefined);
    }, {}, { planTimeoutMs: 30_000 });
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(await run).toMatchObject({ kind: 'released', code: 'plan-timeout' });
    expect((signal?.reason as PlanAborted).code).toBe('timeout');
    expect(t.occurrences.calls).toEqual([`claim ${ID}`, `release ${ID} plan-timeout after 30 s`]);
  });

  it('retries complete until it lands', async () => {
    const t = setup(granted, async () => ({ steps: 2 }), { complete: answers(failed(0), failed(502), { kind: 'granted' }) });
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(3000);
    expect(await run).toEqual({ kind: 'planned', steps: 2, completed: true });
    expect(t.occurrences.calls.filter((c) => c.startsWith('complete'))).toHaveLength(3);
  });

  it('stops retrying complete when the server says the occurrence is gone', async () => {
    const t = setup(granted, async () => ({ steps: 2 }), { complete: answers(failed(503), { kind: 'elsewhere', status: 410, code: 'gone' }) });
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(await run).toEqual({ kind: 'planned', steps: 2, completed: false });
    expect(t.occurrences.calls.filter((c) => c.startsWith('complete'))).toHaveLength(2);
  });
});

describe('what goes back to the server', () => {
  it("releases with a fixed code and the error's class name, never the planner's text", async () => {
    const t = setup(granted, async () => {
      throw new TypeError('decrypted objective: "Propose my salary negotiation"');
    });
    const outcome = await runNudge(nudge, t.deps);
    expect(outcome).toMatchObject({ kind: 'released', code: 'plan-failed' });
    expect(t.occurrences.calls).toEqual([`claim ${ID}`, `release ${ID} plan-failed TypeError`]);
    expect(t.types()).toEqual(['claimed', 'error', 'released']);
    expect(await t.dedup.get(ID)).toMatchObject({ state: 'elsewhere', attempt: 1 });
  });

  it('a caller that stops (sign-out) cancels planning and gives it back with cancelled', async () => {
    const stop = new AbortController();
    const t = setup(granted, () => new Promise(() => undefined), {}, { signal: stop.signal });
    const run = runNudge(nudge, t.deps);
    await vi.advanceTimersByTimeAsync(0);
    stop.abort();
    expect(await run).toMatchObject({ kind: 'released', code: 'cancelled' });
    expect(t.occurrences.calls.at(-1)).toBe(`release ${ID} cancelled AbortError`);
  });
});
