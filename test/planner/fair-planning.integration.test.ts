/**
 * Abuse bounds of the fallback planner, against real coordinators, a real
 * Postgres and the stub mana-llm answering with a delay: one user's backlog
 * delays another user's plan by at most one plan slot, and the per-user
 * daily budget of server plans holds across two instances sharing the
 * database, with the reason visible to the user.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { overBudgetReason } from '../../src/planner/plan-budget.js';
import { inMs, insertPlannableMissions, occurrenceRows, startPlanningCoordinator, waitFor, type PlanningCoordinator } from './support.js';
import { REASONS } from '../../src/schedule/reasons.js';

let db: TestDb;
let stub: LlmStub | undefined;
const running: PlanningCoordinator[] = [];

beforeEach(async () => {
  db = await createTestDb({ poolMax: 8 });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await stub?.close();
  stub = undefined;
  await db.drop();
});

async function start(env: Record<string, string>): Promise<PlanningCoordinator> {
  const c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub!.url, ...env });
  running.push(c);
  return c;
}

const missions = (userId: string, n: number, title: string) =>
  Array.from({ length: n }, (_, i) => ({ userId, missionId: `${userId}-m${i}`, nextRunAt: inMs(-60_000), title: `${title} ${i}` }));

describe('fair fallback planning', () => {
  it("a 40-mission backlog of one user delays another user's single plan by at most one plan slot", async () => {
    // The first two plans (the backlog's, in flight) are slow, so the second user's
    // occurrence is surely queued before any slot frees; the rest take 300 ms.
    stub = await startLlmStub((req) => reply.plan(undefined, { delayMs: req.n <= 2 ? 3000 : 300 }));
    await start({ PLANNER_CONCURRENCY: '2', PLANNER_MAX_PLANS_PER_USER_PER_DAY: '100', INSTANCE_ID: 'fair-1' });

    await insertPlannableMissions(db.sql, missions('hog', 40, 'Hog mission'));
    await waitFor(async () => {
      const rows = await occurrenceRows(db.sql, 'hog');
      return rows.length === 40 && rows.every((o) => o.status === 'planning') && stub!.requests.length === 2 ? true : undefined;
    }, 10_000, 'the backlog queued with both slots busy');

    await insertPlannableMissions(db.sql, [{ userId: 'bob', missionId: 'bob-m0', nextRunAt: inMs(-60_000), title: 'Bob mission' }]);
    await waitFor(async () => ((await occurrenceRows(db.sql, 'bob'))[0]?.status === 'planning' ? true : undefined), 10_000, "bob's occurrence queued");
    // Precondition: bob queued while the two slow plans still hold both slots.
    expect(stub.requests.length).toBe(2);

    const bobRequest = await waitFor(async () => stub!.requests.find((r) => r.user.includes('Bob mission')), 15_000, "bob's plan to reach mana-llm");
    const hogBefore = stub.requests.filter((r) => r.n < bobRequest.n && r.user.includes('Hog mission')).length;
    // The two in flight when bob queued, plus at most one granted before him (round-robin).
    expect(hogBefore).toBeLessThanOrEqual(3);
    // Without fairness bob would have been the 41st request.
    expect(bobRequest.n).toBeLessThanOrEqual(4);
  }, 60_000);
});

describe('daily budget of server plans per user', () => {
  it('holds across two instances: exactly the budget reaches mana-llm, the rest wait with a reason the user sees', async () => {
    stub = await startLlmStub(reply.plan(undefined, { delayMs: 100 }));
    const env = { PLANNER_CONCURRENCY: '4', PLANNER_MAX_PLANS_PER_USER_PER_DAY: '3' };
    const a = await start({ ...env, INSTANCE_ID: 'budget-a' });
    await start({ ...env, INSTANCE_ID: 'budget-b' });

    await insertPlannableMissions(db.sql, [...missions('spender', 8, 'Spender mission'), ...missions('other', 1, 'Other mission')]);
    const settled = await waitFor(async () => {
      const rows = await occurrenceRows(db.sql, 'spender');
      return rows.length === 8 && rows.filter((o) => o.status === 'planned').length === 3 && rows.filter((o) => o.status === 'waiting').length === 5 ? rows : undefined;
    }, 20_000, '3 planned and 5 waiting');
    // The other user's budget is their own.
    await waitFor(async () => ((await occurrenceRows(db.sql, 'other'))[0]?.status === 'planned' ? true : undefined), 10_000, "the other user's plan");
    await Promise.all(running.map((c) => c.planner!.idle()));

    expect(stub.requests.filter((r) => r.user.includes('Spender mission'))).toHaveLength(3);
    expect(new Set(settled.filter((o) => o.status === 'waiting').map((o) => o.lastError))).toEqual(new Set([overBudgetReason(3).detail]));

    // The user sees why: GET /v1/occurrences with their own token.
    const { token } = (await (await fetch(`${a.url}/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'spender' }) })).json()) as { token: string };
    const res = await fetch(`${a.url}/v1/occurrences`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const list = (await res.json()) as { status: string; reason: unknown; lastError?: unknown }[];
    const waiting = list.filter((o) => o.status === 'waiting');
    expect(waiting.map((o) => o.reason)).toEqual(Array(5).fill({ code: 'plan-budget', message: REASONS['plan-budget'] }));
    // The operators' detail stays with the operators.
    expect(waiting.every((o) => !('lastError' in o))).toBe(true);
  }, 60_000);
});

describe('prompt bounds end to end', () => {
  it('a mission with a megabyte objective reaches mana-llm cut, with the cut said in the prompt', async () => {
    stub = await startLlmStub(reply.plan());
    await start({ INSTANCE_ID: 'bounds-1' });
    await insertPlannableMissions(db.sql, [{ userId: 'verbose', missionId: 'big', nextRunAt: inMs(-60_000), objective: 'o'.repeat(1_000_000), conceptMarkdown: 'c'.repeat(50_000) }]);
    const req = await waitFor(async () => stub!.requests[0], 10_000, 'the plan request');
    expect(req.user).toContain('…[truncated 998,000 characters]');
    expect(req.user).toContain('…[truncated 42,000 characters]');
    expect(req.user.length).toBeLessThan(20_000);
    await waitFor(async () => ((await occurrenceRows(db.sql, 'verbose'))[0]?.status === 'planned' ? true : undefined), 10_000, 'planned');
  }, 30_000);
});
