/**
 * The agent status stored on each mission's snapshot row (the due index
 * reads it) is agent.ts's rule applied to what the user's devices hold:
 * random histories of agents and missions — pauses, resumes, odd states,
 * soft and hard deletes, a default agent record coming and going, missions
 * moving between agents — written in rounds, each projected by an
 * incremental pass, and after every pass each mission's stored status must
 * be resolveMissionAgent's on the devices' records (oracle.ts). And the pass
 * reports the missions whose agent stopped, for settling.
 */
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_AGENT_ID, resolveMissionAgent } from '../../src/agents/agent.js';
import { createProjection } from '../../src/projection/refresh.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { oracleViews, type LogRow } from './oracle.js';
import { insertRows, readLog, resetProjection, rowMaker } from './log-db.js';

let db: TestDb;
const silent = pino({ level: 'silent' });

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

const USERS = ['u1', 'u2'];
const AGENTS = ['a-1', 'a-2', DEFAULT_AGENT_ID];
const MISSIONS = ['m1', 'm2', 'm3'];
const odd = [null, 0, 1, '', 'x', {}, []];

type Step =
  | { kind: 'agent-insert'; user: string; agent: string; state: unknown; deletedAt: unknown }
  | { kind: 'agent-update'; user: string; agent: string; fields: Record<string, unknown> }
  | { kind: 'agent-delete'; user: string; agent: string; soft: boolean }
  | { kind: 'mission-insert'; user: string; mission: string; agentId: unknown }
  | { kind: 'mission-update'; user: string; mission: string; agentId: unknown };

const user = fc.constantFrom(...USERS);
const agent = fc.constantFrom(...AGENTS);
const state = fc.constantFrom<unknown>('active', 'active', 'paused', 'archived', 'hibernating', ...odd);
const agentId = fc.constantFrom<unknown>(...AGENTS, 'never-synced', ...odd);
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('agent-insert' as const), user, agent, state, deletedAt: fc.constantFrom<unknown>(undefined, undefined, '2026-01-01T00:00:00.000Z', ...odd) }),
  fc.record({
    kind: fc.constant('agent-update' as const),
    user,
    agent,
    fields: fc.oneof(state.map((s) => ({ state: s })), fc.constantFrom<Record<string, unknown>>({ deletedAt: '2026-02-01T00:00:00.000Z' }, { deletedAt: null }, { name: 'Renamed' })),
  }),
  fc.record({ kind: fc.constant('agent-delete' as const), user, agent, soft: fc.boolean() }),
  fc.record({ kind: fc.constant('mission-insert' as const), user, mission: fc.constantFrom(...MISSIONS), agentId }),
  fc.record({ kind: fc.constant('mission-update' as const), user, mission: fc.constantFrom(...MISSIONS), agentId }),
);

/** The steps as mana-sync rows, stamped in order from `start`. */
function rowsOf(steps: Step[], make: (p: Partial<LogRow>) => LogRow, start: number): LogRow[] {
  return steps.map((s, i) => {
    const at = new Date(start + i).toISOString();
    const createdAt = `${at.slice(0, 23)}000Z`;
    const base = { userId: s.user, createdAt };
    switch (s.kind) {
      case 'agent-insert':
        return make({ ...base, tableName: 'agents', recordId: s.agent, op: 'insert', data: { name: 'A', state: s.state, createdAt: at, updatedAt: at, ...(s.deletedAt === undefined ? {} : { deletedAt: s.deletedAt }) } });
      case 'agent-update':
        return make({ ...base, tableName: 'agents', recordId: s.agent, op: 'update', data: s.fields, fieldMeta: Object.fromEntries(Object.keys(s.fields).map((k) => [k, at])) });
      case 'agent-delete':
        return make({ ...base, tableName: 'agents', recordId: s.agent, op: 'delete', data: s.soft ? { deletedAt: at } : null });
      case 'mission-insert':
        return make({ ...base, tableName: 'aiMissions', recordId: s.mission, op: 'insert', data: { title: 't', state: 'active', nextRunAt: at, createdAt: at, updatedAt: at, agentId: s.agentId } });
      case 'mission-update':
        return make({ ...base, tableName: 'aiMissions', recordId: s.mission, op: 'update', data: { agentId: s.agentId }, fieldMeta: { agentId: at } });
    }
  });
}

/** Each present mission view's agent status by agent.ts, on the records the devices hold. */
async function expectedStatuses(): Promise<Map<string, string>> {
  const views = oracleViews(await readLog(db.sql));
  const out = new Map<string, string>();
  for (const [key, view] of views) {
    const [table, userId, missionId] = key.split('\u0000') as [string, string, string];
    if (table !== 'aiMissions' || !view) continue;
    const agents = new Map<string, unknown>();
    for (const id of AGENTS) {
      const agentView = views.get(`agents\u0000${userId}\u0000${id}`);
      if (agentView) agents.set(id, agentView.record);
    }
    out.set(`${userId}/${missionId}`, resolveMissionAgent(view.record, agents).status);
  }
  return out;
}

async function storedStatuses(): Promise<Map<string, string | null>> {
  const rows = await db.sql<{ k: string; status: string | null }[]>`
    SELECT user_id || '/' || mission_id AS k, agent_status AS status FROM mana_ai.mission_snapshots WHERE present`;
  return new Map(rows.map((r) => [r.k, r.status]));
}

describe("the agent status on a mission's snapshot", () => {
  it("is agent.ts's status of the mission's agent after every pass, on random histories", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(step, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 5 }), async (rounds) => {
        await resetProjection(db.sql);
        const projection = createProjection({ sql: db.sql, log: silent, batchRows: 50, cacheRecords: 50 });
        const make = rowMaker(() => ({}));
        let start = 0;
        let before = await storedStatuses();
        for (const round of rounds) {
          // Rows are never older than the pass before them (created_at is a writer's transaction start).
          start = Math.max(start, Date.now());
          await insertRows(db.sql, rowsOf(round, make, start));
          start += round.length;
          const stats = await projection.refresh();
          const stored = await storedStatuses();
          expect(stored).toEqual(await expectedStatuses());
          // Every mission whose agent stopped in this pass is among those it reports changed (settling reads them).
          for (const [k, status] of stored) {
            if (status === 'active' || before.get(k) === status) continue;
            const [userId, missionId] = k.split('/');
            expect(stats.changed, k).toEqual(expect.arrayContaining([{ userId, missionId }]));
          }
          before = stored;
        }
      }),
      { numRuns: 40 },
    );
  });

  it('rows written without a status (another writer, a migration) are worked out by the first pass of a process', async () => {
    await resetProjection(db.sql);
    const make = rowMaker(() => ({}));
    await insertRows(db.sql, rowsOf([
      { kind: 'agent-insert', user: 'u1', agent: 'a-1', state: 'paused', deletedAt: undefined },
      { kind: 'mission-insert', user: 'u1', mission: 'm1', agentId: 'a-1' },
      { kind: 'mission-insert', user: 'u1', mission: 'm2', agentId: undefined },
    ], make, Date.now()));
    await createProjection({ sql: db.sql, log: silent, batchRows: 50, cacheRecords: 50 }).refresh();
    await db.sql`UPDATE mana_ai.mission_snapshots SET agent_status = NULL`;
    const next = createProjection({ sql: db.sql, log: silent, batchRows: 50, cacheRecords: 50 });
    const stats = await next.refresh();
    expect(stats.rowsApplied).toBe(0);
    expect(Object.fromEntries(await storedStatuses())).toEqual({ 'u1/m1': 'paused', 'u1/m2': 'active' });
  });
});
