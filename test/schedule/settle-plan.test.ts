/**
 * Which settle a sweep runs (settle-plan.ts): a full settle owed by changes
 * nobody could list is delayed by a backlog's hold or the duty cycle, never
 * dropped; a listed change is settled at once, targeted.
 */
import { describe, expect, it } from 'vitest';
import { SETTLE_DUTY, SETTLE_EVERY_MS, settlePlan, type SettleHistory } from '../../src/schedule/settle-plan.js';

const fresh = (over: Partial<SettleHistory> = {}): SettleHistory => ({ lastFullAt: 0, lastFullMs: 0, owed: false, ...over });
const mission = { userId: 'u', missionId: 'm' };

describe('settlePlan', () => {
  it('settles listed changes at once, targeted, and the rest every SETTLE_EVERY_MS outside a backlog', () => {
    expect(settlePlan({ changed: [mission], backlog: false, now: 1000 }, fresh({ lastFullAt: 500 }))).toEqual({ step: 'targeted', owed: false });
    expect(settlePlan({ changed: [], backlog: false, now: 1000 }, fresh({ lastFullAt: 500 }))).toEqual({ step: 'none', owed: false });
    expect(settlePlan({ changed: [], backlog: false, now: 500 + SETTLE_EVERY_MS }, fresh({ lastFullAt: 500 }))).toEqual({ step: 'full', owed: false });
    // A backlog holds the periodic one back.
    expect(settlePlan({ changed: [mission], backlog: true, now: 500 + SETTLE_EVERY_MS }, fresh({ lastFullAt: 500 }))).toEqual({ step: 'targeted', owed: false });
  });

  it('an unknown set of changed missions owes a full settle, during a backlog too', () => {
    expect(settlePlan({ changed: null, backlog: true, now: 1000 }, fresh({ lastFullAt: 900 }))).toEqual({ step: 'full', owed: false });
    expect(settlePlan({ changed: undefined, backlog: false, now: 1000 }, fresh({ lastFullAt: 900 }))).toEqual({ step: 'full', owed: false });
  });

  it('a slow full settle is spaced by the duty cycle; what it owes meanwhile stays owed until it runs', () => {
    // The last full settle took 1.5 s: the next may start 15 s after it began.
    const slow = fresh({ lastFullAt: 10_000, lastFullMs: 1500 });
    const held = settlePlan({ changed: null, backlog: true, now: 12_000 }, slow);
    expect(held).toEqual({ step: 'none', owed: true });
    // Later sweeps list their changes (settled targeted) and still owe the full one.
    const later = settlePlan({ changed: [mission], backlog: true, now: 20_000 }, { ...slow, owed: held.owed });
    expect(later).toEqual({ step: 'targeted', owed: true });
    expect(settlePlan({ changed: [], backlog: true, now: 24_000 }, { ...slow, owed: later.owed })).toEqual({ step: 'none', owed: true });
    expect(settlePlan({ changed: [], backlog: true, now: 10_000 + SETTLE_DUTY * 1500 }, { ...slow, owed: true })).toEqual({ step: 'full', owed: false });
  });
});
