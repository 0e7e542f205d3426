/**
 * SYNC_SCHEMA qualifies every reference to sync_changes: with the table in
 * schema `sync` (and none in public), dev mode creates it there, the dev
 * endpoint writes there, the projection reads it and the server planner
 * writes back there; nothing named sync_changes appears anywhere else.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { startTestCoordinator, type TestCoordinator } from '../support/coordinator.js';
import { startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { waitFor } from '../support/wait.js';

let db: TestDb;
let llm: LlmStub;
let c: TestCoordinator;

beforeAll(async () => {
  db = await createTestDb({ migrate: false });
  llm = await startLlmStub();
  c = await startTestCoordinator(db.sql, { SYNC_SCHEMA: 'sync', MANA_LLM_URL: llm.url, PLANNER_RETRY_BACKOFF_MS: '200' });
});

afterAll(async () => {
  await c?.stop();
  await llm?.close();
  await db?.drop();
});

it('creates, reads and writes sync.sync_changes only', async () => {
  const token = await c.token('sam');
  const mission = { id: 'm1', title: 'schema mission', cadence: { kind: 'manual' }, state: 'active', iterations: [], nextRunAt: new Date().toISOString(), createdAt: new Date().toISOString() };
  const res = await fetch(`${c.url}/dev/sync/changes`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ changes: [{ appId: 'ai', tableName: 'aiMissions', recordId: 'm1', op: 'insert', data: mission }] }),
  });
  expect(res.status).toBe(200);
  // No device: the server plans it and writes the iteration back into the same table.
  const written = await waitFor(
    async () => {
      const rows = await db.sql`SELECT user_id FROM sync.sync_changes WHERE record_id = 'm1' AND client_id = 'mana-ai-runner'`;
      return rows.length > 0 && rows;
    },
    20_000,
    'the server iteration in sync.sync_changes',
  );
  expect(written).toEqual([{ user_id: 'sam' }]);
  const tables = await db.sql`SELECT n.nspname AS schema FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace WHERE t.relname = 'sync_changes'`;
  expect(tables).toEqual([{ schema: 'sync' }]);
});
