import { describe, expect, it } from 'vitest';
import { demoSteps, mergeIteration, nextRunAfter, proposalsFor } from '../../web-client/src/demo-lib/planner.js';
import { notificationBody } from '../../web-client/src/sw.js';

describe('demo planner (the demo stand-in, not the real planner)', () => {
  it('makes 2 steps, 3 for a title of three words or more, with contract step ids', () => {
    expect(demoSteps({ title: 'Groceries' }, 'it')).toHaveLength(2);
    const steps = demoSteps({ title: 'Plan my week' }, 'it');
    expect(steps.map((s) => s.id)).toEqual(['it-0', 'it-1', 'it-2']);
    expect(steps.every((s) => s.intent.kind === 'toolCall')).toBe(true);
  });

  it('moves nextRunAt by the cadence', () => {
    const now = new Date('2026-11-25T10:00:00Z');
    expect(nextRunAfter({ kind: 'interval', everyMinutes: 60 }, now)).toBe('2026-11-25T11:00:00.000Z');
    expect(nextRunAfter({ kind: 'manual' }, now)).toBeUndefined();
    expect(nextRunAfter({ kind: 'cron', expression: '* * * * *' }, now)).toBeUndefined();
    const daily = nextRunAfter({ kind: 'daily', atHour: 9, atMinute: 30 }, now);
    expect(daily && Date.parse(daily) > now.getTime()).toBe(true);
  });

  it('merges an iteration by id, newest last', () => {
    const it = { id: 'b', startedAt: 's', plan: [], overallStatus: 'awaiting-review' as const };
    const merged = mergeIteration([{ id: 'a' }, { id: 'b', old: true }, null], it);
    expect(merged.map((i) => i.id)).toEqual(['a', 'b']);
    expect(merged[1]).toBe(it);
  });

  it('turns steps into local proposals', () => {
    const steps = demoSteps({ title: 'Plan my week' }, 'it');
    const proposals = proposalsFor({ id: 'm', title: 'Plan my week' }, { id: 'it', startedAt: 's', plan: steps, overallStatus: 'awaiting-review' }, 'server');
    expect(proposals.map((p) => [p.id, p.status, p.source])).toEqual([
      ['it-0', 'pending', 'server'],
      ['it-1', 'pending', 'server'],
      ['it-2', 'pending', 'server'],
    ]);
  });
});

describe('service-worker notification text', () => {
  it('says what happened', () => {
    expect(notificationBody({ kind: 'planned', steps: 3, completed: true })).toBe('3 proposals ready');
    expect(notificationBody({ kind: 'planned', steps: 1, completed: true })).toBe('1 proposal ready');
    expect(notificationBody({ kind: 'notified' })).toBe('Mission due — open to plan');
    expect(notificationBody({ kind: 'duplicate', state: 'planned' })).toBe('Proposals ready — open to review');
  });
});
