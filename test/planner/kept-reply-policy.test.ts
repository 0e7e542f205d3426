/**
 * A reply kept from an earlier attempt is written only with the steps the
 * agent's policy allows now: the policy may have changed between the reply
 * and its write (the agent paused and resumed with other rules).
 */
import { describe, expect, it } from 'vitest';
import { planIteration, withoutDeniedSteps } from '../../src/planner/iteration.js';

const kept = planIteration(
  '7f1c2a44-0000-5000-8000-000000000001',
  {
    summary: 'Two things',
    steps: [
      { summary: 'A task', toolName: 'create_task', params: { title: 'Pay rent' }, rationale: 'Due soon' },
      { summary: 'A note', toolName: 'create_note', params: { title: 'Budget', body: 'Spent less' }, rationale: 'Keeps track' },
    ],
  },
  '2026-12-01T09:00:00.000Z',
  '2026-12-01T09:00:05.000Z',
);

describe('a kept reply under the policy of now', () => {
  it('drops the steps naming a tool denied now, and says which', () => {
    const { iteration, dropped } = withoutDeniedSteps(kept, new Set(['create_task']));
    expect(dropped).toEqual(['create_task']);
    expect(iteration.plan.map((s) => (s.intent.kind === 'toolCall' ? s.intent.toolName : s.intent.kind))).toEqual(['create_note']);
    expect(iteration.id).toBe(kept.id);
    expect(kept.plan).toHaveLength(2);
  });

  it('keeps the plan as it was when nothing it names is denied', () => {
    const out = withoutDeniedSteps(kept, new Set(['wire_money']));
    expect(out).toEqual({ iteration: kept, dropped: [] });
  });
});
