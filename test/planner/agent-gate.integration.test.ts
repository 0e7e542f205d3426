/**
 * The server planner plans a mission as its agent would, or not at all: a
 * coordinator with server planning, a stub mana-llm, a real Postgres, and
 * agent records written into the change log as mana-sync writes them. A
 * paused, archived or deleted agent's mission is not due, so never sent to
 * the LLM, and falls due once the agent resumes; the prompt carries the agent's plaintext
 * name, role, instructions and memory and never its ciphertext; the tools
 * offered are those its policy does not deny, and a step naming a denied or
 * unknown tool is never written.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_AGENT_ID } from '../../src/agents/agent.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { seedAgents, updateAgent } from '../support/agents.js';
import { seedMissions } from '../support/missions.js';
import { inMs, metricValue, occurrenceRows, runnerRows, sleep, startPlanningCoordinator, waitFor, type PlanningCoordinator } from './support.js';

let db: TestDb;
let stub: LlmStub;
let c: PlanningCoordinator;

beforeEach(async () => {
  db = await createTestDb({ poolMax: 6 });
  stub = await startLlmStub();
  c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'agents-1' });
});

afterEach(async () => {
  await c.stop();
  await stub.close();
  await db.drop();
});

/** A due mission of `agentId` (none: a legacy mission without agentId). */
async function dueMission(userId: string, missionId: string, agentId?: string, title = `Mission ${missionId}`): Promise<void> {
  await seedMissions(db.sql, [{ userId, missionId, nextRunAt: inMs(-1000), title, extra: agentId === undefined ? {} : { agentId } }], { clientId: 'device-1' });
}

async function occurrenceOf(userId: string, status: string) {
  return waitFor(async () => (await occurrenceRows(db.sql, userId)).find((o) => o.status === status), 10_000, `an occurrence of ${userId} ${status}`);
}

describe('an agent that is not active', () => {
  it.each([
    ['paused', { state: 'paused' }],
    ['archived', { state: 'archived' }],
    ['deleted', { extra: { deletedAt: '2026-01-01T00:00:00.000Z' } }],
    ['in a state the coordinator does not know', { state: 'hibernating' }],
  ] as const)('%s: its due mission is not due: no occurrence, never the LLM', async (_status, fields) => {
    await seedAgents(db.sql, [{ userId: 'ann', agentId: 'a-1', ...fields }]);
    await dueMission('ann', 'm1', 'a-1');
    // A sibling mission of an active agent, due as well, shows the passes ran.
    await seedAgents(db.sql, [{ userId: 'ann', agentId: 'a-2' }]);
    await dueMission('ann', 'm2', 'a-2');

    await occurrenceOf('ann', 'planned');
    await c.planner!.idle();
    expect((await occurrenceRows(db.sql, 'ann')).map((o) => o.missionId)).toEqual(['m2']);
    expect(stub.requests).toHaveLength(1);
    expect(await runnerRows(db.sql, 'ann')).toHaveLength(1);
  });

  it('resumed, the mission falls due and is planned', async () => {
    await seedAgents(db.sql, [{ userId: 'ben', agentId: 'a-1', state: 'paused' }]);
    await dueMission('ben', 'm1', 'a-1');
    await sleep(500);
    expect(await occurrenceRows(db.sql, 'ben')).toHaveLength(0);

    await updateAgent(db.sql, 'ben', 'a-1', { state: 'active' });
    await occurrenceOf('ben', 'planned');
    expect(stub.requests).toHaveLength(1);
    expect(await runnerRows(db.sql, 'ben')).toHaveLength(1);
  });
});

describe('which agent a mission belongs to', () => {
  it('no agent records at all: the built-in default agent plans it, with no budget rows', async () => {
    await dueMission('cat', 'm1');
    await occurrenceOf('cat', 'planned');
    expect(stub.requests[0]!.system).not.toContain('## The agent');
    const [slots] = await db.sql<{ n: number }[]>`SELECT (SELECT count(*) FROM mana_ai.agent_slots)::int + (SELECT count(*) FROM mana_ai.agent_tokens)::int AS n`;
    expect(slots!.n).toBe(0);
  });

  it("a mission without agentId belongs to the user's default agent record", async () => {
    await seedAgents(db.sql, [{ userId: 'dan', agentId: DEFAULT_AGENT_ID, name: 'Mana', state: 'paused' }]);
    await dueMission('dan', 'm1');
    await dueMission('dan', 'm2', 'never-synced');
    await sleep(500);
    expect(await occurrenceRows(db.sql, 'dan')).toHaveLength(0);
    expect(stub.requests).toHaveLength(0);
  });

  it('a mission naming an agent with no record falls back to the default agent', async () => {
    await seedAgents(db.sql, [{ userId: 'eve', agentId: DEFAULT_AGENT_ID, name: 'Default helper', role: 'Covers everything' }]);
    await dueMission('eve', 'm1', 'never-synced');
    await occurrenceOf('eve', 'planned');
    expect(stub.requests[0]!.system).toContain('You plan as the user\'s agent "Default helper".');
  });

  it("another user's agent of the same id does not count", async () => {
    await seedAgents(db.sql, [{ userId: 'other', agentId: 'a-1', state: 'paused' }]);
    await dueMission('fay', 'm1', 'a-1');
    await occurrenceOf('fay', 'planned');
  });
});

describe('the prompt', () => {
  it("carries the agent's plaintext name, role, instructions and memory", async () => {
    await seedAgents(db.sql, [
      { userId: 'gus', agentId: 'a-1', name: 'Cashflow Watcher', role: 'Keeps an eye on spending', systemPrompt: 'Always answer in German. PERSONA-MARK', memory: 'The user is saving for a bike. MEMORY-MARK' },
    ]);
    await dueMission('gus', 'm1', 'a-1');
    await occurrenceOf('gus', 'planned');
    const { system } = stub.requests[0]!;
    expect(system).toContain('You plan as the user\'s agent "Cashflow Watcher".');
    expect(system).toContain('Its role: Keeps an eye on spending');
    expect(system).toContain('Always answer in German. PERSONA-MARK');
    expect(system).toContain('The user is saving for a bike. MEMORY-MARK');
  });

  it("never carries the agent's ciphertext: encrypted instructions and memory are left out, the rest is used", async () => {
    await seedAgents(db.sql, [{ userId: 'hal', agentId: 'a-1', name: 'Private Coach', systemPrompt: 'enc:1:AAAAsecretprompt', memory: 'enc:1:BBBBsecretmemory' }]);
    await dueMission('hal', 'm1', 'a-1');
    await occurrenceOf('hal', 'planned');
    const body = JSON.stringify(stub.requests[0]!.body);
    expect(body).toContain('Private Coach');
    expect(body).not.toContain('enc:1:');
    expect(body).not.toContain('secret');
  });
});

describe('the policy', () => {
  const mixed = [
    { summary: 'A task', toolName: 'create_task', params: { title: 'Pay rent' }, rationale: 'Due soon' },
    { summary: 'A note', toolName: 'create_note', params: { title: 'Budget', body: 'Spent less' }, rationale: 'Keeps track' },
    { summary: 'A made-up one', toolName: 'wire_money', params: { amount: 100 }, rationale: 'Why not' },
  ];

  it('offers only the tools it does not deny; a step naming a denied or unknown tool is never written', async () => {
    stub.setDefault(reply.plan(mixed));
    await seedAgents(db.sql, [{ userId: 'ida', agentId: 'a-1', policy: { tools: { create_note: 'auto' }, defaultsByModule: { todo: 'deny' }, defaultForAi: 'propose' } }]);
    await dueMission('ida', 'm1', 'a-1');
    const occ = await occurrenceOf('ida', 'planned');

    const { system } = stub.requests[0]!;
    expect(system).not.toContain('- create_task [module');
    expect(system).not.toContain('- complete_task [module');
    expect(system).toContain('- create_note [module: notes]');
    expect(system).toContain('- create_event [module: calendar]');
    const [row] = await runnerRows(db.sql, 'ida');
    const written = row!.data.iterations.find((it) => it.id === occ.iterationId)!;
    expect(written.plan.map((s) => (s.intent.kind === 'toolCall' ? s.intent.toolName : s.intent.kind))).toEqual(['create_note']);
    expect(await metricValue(c, 'mana_ai_plan_steps_dropped_total', { why: 'denied' })).toBe(1);
    expect(await metricValue(c, 'mana_ai_plan_steps_dropped_total', { why: 'unknown' })).toBe(1);
    expect(c.warnings('plan steps dropped')).toEqual([expect.objectContaining({ iterationId: occ.iterationId, dropped: 2 })]);
  });

  it('a global deny with one tool allowed by name offers only that tool', async () => {
    stub.setDefault(reply.plan(mixed));
    await seedAgents(db.sql, [{ userId: 'jon', agentId: 'a-1', policy: { tools: { create_task: 'propose' }, defaultForAi: 'deny' } }]);
    await dueMission('jon', 'm1', 'a-1');
    const occ = await occurrenceOf('jon', 'planned');
    expect(stub.requests[0]!.system.match(/^- \w+ \[module/gm)).toEqual(['- create_task [module']);
    const [row] = await runnerRows(db.sql, 'jon');
    expect(row!.data.iterations.find((it) => it.id === occ.iterationId)!.plan.map((s) => s.summary)).toEqual(['A task']);
  });

  it('an encrypted policy is left to a device: the mission waits and never reaches the LLM', async () => {
    await seedAgents(db.sql, [{ userId: 'kim', agentId: 'a-1', policy: 'enc:1:CCCCpolicy' }]);
    await dueMission('kim', 'm1', 'a-1');
    const occ = await occurrenceOf('kim', 'waiting');
    expect(occ.reason).toBe('agent-encrypted');
    expect(occ.lastError).toContain('policy is end-to-end encrypted');
    expect(stub.requests).toHaveLength(0);
  });
});

describe('tokens', () => {
  it("books the reply's reported usage against the agent, and estimates it when none is reported", async () => {
    stub.script(reply.plan(undefined, { usage: { prompt_tokens: 700, completion_tokens: 34, total_tokens: 734 } }));
    await seedAgents(db.sql, [{ userId: 'lea', agentId: 'a-1', maxTokensPerDay: 100_000 }]);
    await dueMission('lea', 'm1', 'a-1', 'First');
    await occurrenceOf('lea', 'planned');
    await c.planner!.idle();
    await dueMission('lea', 'm2', 'a-1', 'Second');
    await waitFor(async () => (await occurrenceRows(db.sql, 'lea')).filter((o) => o.status === 'planned').length === 2, 10_000, 'both planned');
    await c.planner!.idle();

    const rows = await db.sql<{ tokens: number; agentId: string }[]>`SELECT tokens, agent_id AS "agentId" FROM mana_ai.agent_tokens ORDER BY spent_at`;
    expect(rows[0]).toEqual({ tokens: 734, agentId: 'a-1' });
    // No usage in the second reply: about a token per 4 characters of the request and reply.
    const sent = stub.requests[1]!.system.length + stub.requests[1]!.user.length;
    expect(rows[1]!.tokens).toBeGreaterThan(sent / 4);
    expect(rows[1]!.tokens).toBeLessThan(sent / 4 + 200);
    expect(await metricValue(c, 'mana_ai_llm_tokens_total')).toBe(734 + rows[1]!.tokens);
  });
});
