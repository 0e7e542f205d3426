/**
 * Agents (app ai, table agents) are projected by the same pass as missions,
 * by the same rules, into mana_ai.agent_snapshots: each user's view of
 * them, tombstones included (the planner reads them through agentRecords).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createTestDb, type TestDb } from '../support/db.js';
import { createProjection } from '../../src/projection/refresh.js';
import type { Sql } from '../../src/db/pool.js';
import { insertRows, resetProjection, rowMaker, testClock, viewsMatchOracle } from './log-db.js';

let db: TestDb;

/** A user's view of an agent as the table keeps it (present, soft-deleted, state, author, the record). */
interface AgentView {
  userId: string;
  agentId: string;
  present: boolean;
  deleted: boolean;
  state: string | null;
  author: string | null;
  record: Record<string, unknown> | null;
}

const SELECT = `user_id AS "userId", agent_id AS "agentId", present, soft_deleted AS deleted, state, author,
  CASE WHEN present THEN jsonb_build_object('id', agent_id) || fields END AS record`;

async function getAgent(sql: Sql, userId: string, agentId: string): Promise<AgentView | null> {
  const [row] = await sql<AgentView[]>`
    SELECT ${sql.unsafe(SELECT)} FROM mana_ai.agent_snapshots WHERE user_id = ${userId} AND agent_id = ${agentId}`;
  return row ?? null;
}

async function agentsOfUsers(sql: Sql, userIds: readonly string[]): Promise<AgentView[]> {
  if (userIds.length === 0) return [];
  return sql<AgentView[]>`
    SELECT ${sql.unsafe(SELECT)} FROM mana_ai.agent_snapshots WHERE user_id = ANY(${[...userIds]}::text[])
    ORDER BY user_id, agent_id`;
}

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

const { at, c } = testClock();
const agent = rowMaker(() => ({ tableName: 'agents', userId: 'u1', recordId: 'a1' }));

describe('agents', () => {
  it('are projected in the same pass as missions, each user’s view, with present, deleted and state', async () => {
    await resetProjection(db.sql);
    const projection = createProjection({ sql: db.sql, log: pino({ level: 'silent' }), batchRows: 100, cacheRecords: 100 });
    const record = { name: 'Cashflow Watcher', role: 'money', state: 'active', maxConcurrentMissions: 1, policy: { defaultForAi: 'propose' }, createdAt: at(0), updatedAt: at(0), authorId: 'u1' };
    await insertRows(db.sql, [
      agent({ op: 'insert', createdAt: c(0), data: record }),
      agent({ recordId: 'a2', op: 'insert', createdAt: c(0), data: { ...record, name: 'Gardener', state: 'paused' } }),
      agent({ recordId: 'a3', op: 'insert', createdAt: c(0), data: { ...record, name: 'Retired' } }),
      agent({ tableName: 'aiMissions', userId: 'u2', recordId: 'm1', op: 'insert', createdAt: c(0), data: { title: 'a mission', agentId: 'a9' } }),
    ]);
    const first = await projection.refresh();
    expect(first.rowsApplied).toBe(4);
    expect(first.changedAgents).toEqual(expect.arrayContaining([{ userId: 'u1', agentId: 'a1' }, { userId: 'u1', agentId: 'a2' }, { userId: 'u1', agentId: 'a3' }]));
    expect(first.changed).toEqual([{ userId: 'u2', missionId: 'm1' }]);

    // Later, as devices write: a pause, a soft delete, and a hard delete.
    await insertRows(db.sql, [
      agent({ op: 'update', createdAt: c(1), data: { state: 'paused' }, fieldMeta: { state: at(1) } }),
      agent({ recordId: 'a3', op: 'delete', createdAt: c(1), data: { deletedAt: at(1) } }),
      agent({ recordId: 'a2', op: 'delete', createdAt: c(2), data: {} }),
    ]);
    const second = await projection.refresh();
    expect(second.rowsApplied).toBe(3);
    expect(second.changedAgents).toHaveLength(3);

    expect(await getAgent(db.sql, 'u1', 'a1')).toEqual({
      userId: 'u1', agentId: 'a1', present: true, deleted: false, state: 'paused', author: 'u1',
      record: { id: 'a1', ...record, state: 'paused' },
    });
    expect(await getAgent(db.sql, 'u1', 'a3')).toMatchObject({ present: true, deleted: true, state: 'active', record: expect.objectContaining({ deletedAt: at(1) }) });
    expect(await getAgent(db.sql, 'u1', 'a2')).toEqual({ userId: 'u1', agentId: 'a2', present: false, deleted: false, state: null, author: null, record: null });
    // No row of the agent for this user: the default agent, for instance.
    expect(await getAgent(db.sql, 'u1', 'legacy:ai-default')).toBeNull();
    expect(await getAgent(db.sql, 'u2', 'a1')).toBeNull();

    expect((await agentsOfUsers(db.sql, ['u1', 'u2'])).map((a) => [a.agentId, a.present, a.deleted])).toEqual([
      ['a1', true, false],
      ['a2', false, false],
      ['a3', true, true],
    ]);
    expect(await agentsOfUsers(db.sql, [])).toEqual([]);
    const { actual, expected } = await viewsMatchOracle(db.sql);
    expect(actual).toEqual(expected);
  });
});
