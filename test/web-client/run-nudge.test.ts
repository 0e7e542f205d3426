import { describe, expect, it } from 'vitest';
import { createMemoryDedupStore } from '../../web-client/src/dedup.js';
import type { MissionClientEventBody } from '../../web-client/src/lib/events.js';
import { classifyClaim } from '../../web-client/src/lib/occurrences.js';
import { runNudge } from '../../web-client/src/lib/run-nudge.js';
import { fakeLocks, fakeOccurrences } from './fakes.js';

const ID = '6a061268-1c1b-5d2e-a3f4-0123456789ab';
const nudge = { type: 'mission-due' as const, missionId: 'm-1', iterationId: ID, dueAt: '2026-11-25T10:00:00Z' };

function setup(claim: Parameters<typeof fakeOccurrences>[0], plan: () => Promise<{ steps: number } | void>, opts = {}) {
  const events: MissionClientEventBody[] = [];
  const dedup = createMemoryDedupStore();
  const occurrences = fakeOccurrences(claim, opts);
  const locks = fakeLocks();
  const deps = { dedup, occurrences, locks, plan, emit: (e: MissionClientEventBody) => events.push(e) };
  return { events, dedup, occurrences, locks, deps, types: () => events.map((e) => e.type) };
}

describe('classifyClaim', () => {
  it('reads the claim answers', () => {
    expect(classifyClaim({ status: 200, ok: true, body: { granted: true, leaseExpiresAt: 'L' } })).toEqual({ kind: 'granted', leaseExpiresAt: 'L' });
    expect(classifyClaim({ status: 200, ok: true, body: { granted: false } })).toMatchObject({ kind: 'elsewhere' });
    expect(classifyClaim({ status: 409, ok: false, body: { error: { code: 'held', message: '' } } })).toEqual({ kind: 'elsewhere', status: 409, code: 'held' });
    expect(classifyClaim({ status: 410, ok: false, body: undefined })).toEqual({ kind: 'elsewhere', status: 410, code: 'http_410' });
    expect(classifyClaim({ status: 404, ok: false, body: undefined })).toMatchObject({ kind: 'elsewhere', status: 404 });
    expect(classifyClaim({ status: 503, ok: false, body: undefined })).toMatchObject({ kind: 'failed' });
    expect(classifyClaim({ status: 401, ok: false, body: undefined })).toMatchObject({ kind: 'failed' });
  });
});

describe('runNudge', () => {
  it('claims, plans, marks planned and completes', async () => {
    const t = setup({ kind: 'granted', leaseExpiresAt: 'L' }, async () => ({ steps: 3 }));
    expect(await runNudge(nudge, t.deps)).toEqual({ kind: 'planned', steps: 3, completed: true });
    expect(t.occurrences.calls).toEqual([`claim ${ID}`, `complete ${ID}`]);
    expect(t.types()).toEqual(['claimed', 'planned']);
    expect((await t.dedup.get(ID))?.state).toBe('planned');
  });

  it('handles a second nudge for the same iteration as a duplicate', async () => {
    const t = setup({ kind: 'granted' }, async () => ({ steps: 1 }));
    await runNudge(nudge, t.deps);
    expect(await runNudge(nudge, t.deps)).toEqual({ kind: 'duplicate', state: 'planned' });
    expect(t.occurrences.calls.filter((c) => c.startsWith('claim'))).toHaveLength(1);
  });

  it('plans once when two contexts race (lock + dedup)', async () => {
    let plans = 0;
    const t = setup({ kind: 'granted' }, async () => {
      plans++;
      await new Promise((r) => setTimeout(r, 10));
      return { steps: 1 };
    });
    const outcomes = await Promise.all([runNudge(nudge, t.deps), runNudge(nudge, t.deps), runNudge(nudge, t.deps)]);
    expect(plans).toBe(1);
    expect(outcomes.map((o) => o.kind).sort()).toEqual(['locked', 'locked', 'planned']);
  });

  it('releases when planning fails, so the server plans at once', async () => {
    const t = setup({ kind: 'granted' }, async () => {
      throw new Error('planner exploded');
    });
    const outcome = await runNudge(nudge, t.deps);
    expect(outcome.kind).toBe('released');
    expect(t.occurrences.calls).toEqual([`claim ${ID}`, `release ${ID} planner exploded`]);
    expect(t.types()).toEqual(['claimed', 'error', 'released']);
    expect((await t.dedup.get(ID))?.state).toBe('elsewhere');
  });

  it('marks 409/410 as done elsewhere and does not plan', async () => {
    let planned = false;
    const t = setup({ kind: 'elsewhere', status: 409, code: 'held' }, async () => {
      planned = true;
    });
    expect(await runNudge(nudge, t.deps)).toEqual({ kind: 'elsewhere', status: 409, code: 'held' });
    expect(planned).toBe(false);
    expect((await t.dedup.get(ID))?.state).toBe('elsewhere');
  });

  it('forgets the mark when the claim got no answer, so a later nudge retries', async () => {
    let answer: Parameters<typeof fakeOccurrences>[0] = { kind: 'failed', error: new Error('network') };
    const t = setup(() => (typeof answer === 'function' ? answer() : answer), async () => ({ steps: 2 }));
    expect((await runNudge(nudge, t.deps)).kind).toBe('failed');
    expect(await t.dedup.get(ID)).toBeUndefined();
    answer = { kind: 'granted' };
    expect((await runNudge(nudge, t.deps)).kind).toBe('planned');
  });

  it('reports a failed complete but keeps the plan', async () => {
    const t = setup({ kind: 'granted' }, async () => ({ steps: 2 }), { completeFails: true });
    expect(await runNudge(nudge, t.deps)).toEqual({ kind: 'planned', steps: 2, completed: false });
    expect(t.types()).toEqual(['claimed', 'error', 'planned']);
  });
});
