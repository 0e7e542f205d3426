/**
 * An agent's budgets hold across instances: two coordinators with server
 * planning on one real Postgres, a stub mana-llm, missions of one agent due
 * together and no device. `maxConcurrentMissions` bounds the agent's plans
 * in flight at once (the stub sees them); a plan that ends wakes the next
 * waiting one, so every mission is planned; `maxTokensPerDay` stops the
 * agent's plans once the tokens booked in the last 24 h reach it, and the
 * rest wait saying so. The per-user plan budget still holds beside them.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REASONS } from '../../src/schedule/reasons.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { seedAgents } from '../support/agents.js';
import { seedMissions } from '../support/missions.js';
import { inMs, metricValue, occurrenceRows, runnerRows, sleep, startPlanningCoordinator, waitFor, type PlanningCoordinator } from './support.js';

let db: TestDb;
let stub: LlmStub;
let cs: PlanningCoordinator[] = [];

beforeEach(async () => {
  db = await createTestDb({ poolMax: 10 });
});

afterEach(async () => {
  await Promise.all(cs.map((c) => c.stop()));
  cs = [];
  await stub.close();
  await db.drop();
});

async function startTwo(env: Record<string, string> = {}): Promise<void> {
  cs = await Promise.all(
    ['budget-a', 'budget-b'].map((id) => startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: id, PLANNER_CONCURRENCY: '4', ...env })),
  );
}

async function dueMissions(userId: string, agentId: string, n: number): Promise<void> {
  await seedMissions(
    db.sql,
    Array.from({ length: n }, (_, i) => ({ userId, missionId: `m${i}`, nextRunAt: inMs(-1000), title: `Budget mission ${i}`, extra: { agentId } })),
    { clientId: 'device-1' },
  );
}

const sum = async (name: string, labels: Record<string, string> = {}) => (await Promise.all(cs.map((c) => metricValue(c, name, labels)))).reduce((a, b) => a + b, 0);

describe('maxConcurrentMissions', () => {
  it('bounds the plans in flight across two instances, and every mission is planned once a slot frees', async () => {
    stub = await startLlmStub(reply.plan(undefined, { delayMs: 400 }));
    await seedAgents(db.sql, [{ userId: 'uma', agentId: 'a-1', maxConcurrentMissions: 2 }]);
    await startTwo();
    await dueMissions('uma', 'a-1', 6);

    await waitFor(async () => (await occurrenceRows(db.sql, 'uma')).filter((o) => o.status === 'planned').length === 6, 20_000, 'all six planned');
    await Promise.all(cs.map((c) => c.planner!.idle()));
    expect(stub.maxInFlight()).toBeLessThanOrEqual(2);
    expect(stub.requests).toHaveLength(6);
    expect(await runnerRows(db.sql, 'uma')).toHaveLength(6);
    // Held back at least once each beyond the first two, and woken rather than left to the 1 min backoff.
    expect(await sum('mana_ai_agent_decisions_total', { decision: 'concurrency' })).toBeGreaterThanOrEqual(4);
    expect(await sum('mana_ai_agent_decisions_total', { decision: 'run' })).toBe(6);
    // Every slot was given back.
    const [left] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.agent_slots WHERE holder IS NOT NULL`;
    expect(left!.n).toBe(0);
  });

  it("another agent of the same user is not held back by the first one's bound", async () => {
    stub = await startLlmStub(reply.plan(undefined, { delayMs: 400 }));
    await seedAgents(db.sql, [
      { userId: 'vic', agentId: 'a-1', maxConcurrentMissions: 1 },
      { userId: 'vic', agentId: 'a-2', maxConcurrentMissions: 1 },
    ]);
    await startTwo();
    await seedMissions(db.sql, [
      { userId: 'vic', missionId: 'x', nextRunAt: inMs(-1000), title: 'First agent', extra: { agentId: 'a-1' } },
      { userId: 'vic', missionId: 'y', nextRunAt: inMs(-1000), title: 'Second agent', extra: { agentId: 'a-2' } },
    ]);
    await waitFor(async () => (await occurrenceRows(db.sql, 'vic')).filter((o) => o.status === 'planned').length === 2, 10_000, 'both planned');
    expect(stub.maxInFlight()).toBe(2);
    expect(await sum('mana_ai_agent_decisions_total', { decision: 'concurrency' })).toBe(0);
  });
});

describe('maxTokensPerDay', () => {
  it('stops the agent once the tokens booked across both instances reach the bound; the rest wait saying so', async () => {
    // 400 tokens a plan, 1,000 a day: the third plan starts at 800 and ends past the bound, the fourth may not start.
    stub = await startLlmStub(reply.plan(undefined, { delayMs: 100, usage: { prompt_tokens: 350, completion_tokens: 50, total_tokens: 400 } }));
    await seedAgents(db.sql, [{ userId: 'wes', agentId: 'a-1', maxConcurrentMissions: 1, maxTokensPerDay: 1000 }]);
    await startTwo();
    await dueMissions('wes', 'a-1', 5);

    await waitFor(
      async () => {
        const occs = await occurrenceRows(db.sql, 'wes');
        return occs.filter((o) => o.status === 'planned').length === 3 && occs.filter((o) => o.reason === 'agent-tokens' && o.status === 'waiting').length === 2;
      },
      15_000,
      'three planned and two waiting for tokens',
    );
    await Promise.all(cs.map((c) => c.planner!.idle()));
    await sleep(500);
    expect(stub.requests).toHaveLength(3);
    const [booked] = await db.sql<{ n: number }[]>`SELECT sum(tokens)::int AS n FROM mana_ai.agent_tokens WHERE user_id = 'wes' AND agent_id = 'a-1'`;
    expect(booked!.n).toBe(1200);
    const waiting = (await occurrenceRows(db.sql, 'wes')).filter((o) => o.status === 'waiting');
    expect(waiting.map((o) => o.lastError)).toEqual([expect.stringContaining('daily budget of 1000 tokens'), expect.stringContaining('daily budget of 1000 tokens')]);

    // What the user sees.
    const c = cs[0]!;
    const res = await fetch(`${c.url}/v1/occurrences`, { headers: { authorization: `Bearer ${await c.token('wes')}` } });
    const body = (await res.json()) as { status: string; reason: { code: string; message: string } | null; lastError?: unknown }[];
    expect(body.filter((o) => o.status === 'waiting').map((o) => o.reason)).toEqual([
      { code: 'agent-tokens', message: REASONS['agent-tokens'] },
      { code: 'agent-tokens', message: REASONS['agent-tokens'] },
    ]);
    expect(body.every((o) => o.lastError === undefined)).toBe(true);
  });

  it('0 tokens a day: the server never plans for the agent', async () => {
    stub = await startLlmStub();
    await seedAgents(db.sql, [{ userId: 'xia', agentId: 'a-1', maxTokensPerDay: 0 }]);
    await startTwo();
    await dueMissions('xia', 'a-1', 1);
    const occ = await waitFor(async () => (await occurrenceRows(db.sql, 'xia')).find((o) => o.status === 'waiting'), 10_000, 'waiting');
    expect(occ.reason).toBe('agent-tokens');
    expect(stub.requests).toHaveLength(0);
  });
});

describe('beside the per-user plan budget', () => {
  it('the per-user budget still holds for an agent with room left', async () => {
    stub = await startLlmStub();
    await seedAgents(db.sql, [{ userId: 'yan', agentId: 'a-1', maxConcurrentMissions: 5 }]);
    await startTwo({ PLANNER_MAX_PLANS_PER_USER_PER_DAY: '2' });
    await dueMissions('yan', 'a-1', 4);
    await waitFor(
      async () => (await occurrenceRows(db.sql, 'yan')).filter((o) => o.status === 'waiting' && o.reason === 'plan-budget').length === 2,
      10_000,
      'two waiting for the user budget',
    );
    await Promise.all(cs.map((c) => c.planner!.idle()));
    expect(stub.requests).toHaveLength(2);
    // The over-budget runs gave their agent slots back.
    const [left] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.agent_slots WHERE holder IS NOT NULL`;
    expect(left!.n).toBe(0);
  });
});
