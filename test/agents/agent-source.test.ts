/**
 * The projected agent source against a real Postgres: agent rows written
 * as mana-sync writes them, projected by a pass, come back merged by the
 * projection's rules, per user, and a mission finds its agent (or the
 * default agent) through it, one primary-key read however long the
 * record's history.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentOfMission, createProjectedAgentSource, type AgentSource } from '../../src/agents/agent-source.js';
import { DEFAULT_AGENT_ID } from '../../src/agents/agent.js';
import { createProjection, type Projection } from '../../src/projection/refresh.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { seedAgents, updateAgent } from '../support/agents.js';

let db: TestDb;
let source: AgentSource;
let projection: Projection;

beforeAll(async () => {
  db = await createTestDb({ acceptRowsManaSyncRefuses: true });
  source = createProjectedAgentSource({ sql: db.sql });
  projection = createProjection({ sql: db.sql, log: pino({ level: 'silent' }), batchRows: 100, cacheRecords: 100 });
});

/** Records as a source returns them once a pass has projected the log. */
async function records(userId: string, ids: string[]) {
  await projection.refresh();
  return source.records(userId, ids);
}

afterAll(async () => {
  await db.drop();
});

async function rawRow(userId: string, agentId: string, op: string, data: unknown): Promise<void> {
  await db.sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
    VALUES ('ai', 'agents', ${agentId}, ${userId}, ${op}, ${data === null ? null : db.sql.json(data as never)}, 'device-1')`;
}

describe('the projected agent source', () => {
  it('merges an agent from its insert and later updates', async () => {
    await seedAgents(db.sql, [{ userId: 'u1', agentId: 'a-1', name: 'Before', maxTokensPerDay: 10 }]);
    await updateAgent(db.sql, 'u1', 'a-1', { state: 'paused', name: 'After' });
    const found = await records('u1', ['a-1']);
    expect(found.get('a-1')).toMatchObject({ id: 'a-1', name: 'After', state: 'paused', maxTokensPerDay: 10 });
  });

  it("reads only the asking user's records, and only the ids asked for", async () => {
    await seedAgents(db.sql, [
      { userId: 'u2', agentId: 'shared-id', name: 'Mine' },
      { userId: 'u3', agentId: 'shared-id', name: 'Theirs' },
      { userId: 'u2', agentId: 'other', name: 'Not asked for' },
    ]);
    const found = await records('u2', ['shared-id', 'missing']);
    expect([...found.keys()]).toEqual(['shared-id']);
    expect(found.get('shared-id')!['name']).toBe('Mine');
    expect((await records('u2', [])).size).toBe(0);
  });

  it('skips a malformed row as the projection does, and forgets a removed record', async () => {
    await seedAgents(db.sql, [{ userId: 'u4', agentId: 'a-1', name: 'Kept' }, { userId: 'u4', agentId: 'a-2' }]);
    await rawRow('u4', 'a-1', 'update', null);
    await rawRow('u4', 'a-1', 'upsert', { name: 'Never' });
    await rawRow('u4', 'a-2', 'delete', null);
    const found = await records('u4', ['a-1', 'a-2']);
    expect(found.get('a-1')!['name']).toBe('Kept');
    expect(found.has('a-2')).toBe(false);
  });

  it("finds a mission's agent, falling back to the user's default agent record", async () => {
    await seedAgents(db.sql, [
      { userId: 'u5', agentId: 'a-1', name: 'Own', state: 'archived' },
      { userId: 'u5', agentId: DEFAULT_AGENT_ID, name: 'Default' },
    ]);
    await projection.refresh();
    expect(await agentOfMission(source, 'u5', { agentId: 'a-1' })).toMatchObject({ id: 'a-1', status: 'archived' });
    expect(await agentOfMission(source, 'u5', { agentId: 'unknown' })).toMatchObject({ id: DEFAULT_AGENT_ID, prompt: { name: 'Default' } });
    expect(await agentOfMission(source, 'u5', {})).toMatchObject({ id: DEFAULT_AGENT_ID, recorded: true });
    expect(await agentOfMission(source, 'nobody', {})).toMatchObject({ id: DEFAULT_AGENT_ID, recorded: false, status: 'active' });
  });

  it('reads what the projection holds, not the log: an edit counts once a pass has projected it', async () => {
    await seedAgents(db.sql, [{ userId: 'u6', agentId: 'a-1', name: 'Edited' }]);
    for (let i = 0; i < 50; i++) await updateAgent(db.sql, 'u6', 'a-1', { memory: `note ${i}` });
    await projection.refresh();
    await updateAgent(db.sql, 'u6', 'a-1', { state: 'paused' });
    expect((await source.records('u6', ['a-1'])).get('a-1')).toMatchObject({ memory: 'note 49', state: 'active' });
    await projection.refresh();
    expect((await source.records('u6', ['a-1'])).get('a-1')).toMatchObject({ state: 'paused' });
  });
});
