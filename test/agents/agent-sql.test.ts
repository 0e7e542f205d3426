/**
 * The agent rules in SQL (agent-sql.ts) are agent.ts's rules: random
 * missions and agent records, hostile values included, decided by Postgres
 * and by the pure module, must agree on every one.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentStatusSql, missionAgentIdSql, missionAgentStatusSql } from '../../src/agents/agent-sql.js';
import { DEFAULT_AGENT_ID, MAX_AGENT_ID_BYTES, missionAgentId, readAgent, resolveMissionAgent } from '../../src/agents/agent.js';
import { createTestDb, type TestDb } from '../support/db.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb({ migrate: false });
});

afterAll(async () => {
  await db.drop();
});

const ids = ['a-1', 'b-2', DEFAULT_AGENT_ID];
const odd = [null, 0, 1, -1, 0.5, true, false, '', 'x', {}, [], [0], { a: 1 }];
const agentId = fc.oneof(fc.constantFrom(...ids, '', 'x'.repeat(MAX_AGENT_ID_BYTES + 1), 'é'.repeat(MAX_AGENT_ID_BYTES / 2 + 1), 'é'.repeat(MAX_AGENT_ID_BYTES / 2)), fc.constantFrom(...odd));
const state = fc.constantFrom('active', 'paused', 'archived', 'Active', 'deleted', ...odd);
const deletedAt = fc.constantFrom('2026-01-01T00:00:00.000Z', ...odd);
const record = fc.oneof(
  { weight: 6, arbitrary: fc.record({ state, deletedAt, name: fc.constantFrom('A', 'enc:1:x') }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>('enc:1:abc', [1], 5, null) },
);
const sample = fc.record({
  mission: fc.record({ agentId, title: fc.constant('m') }, { requiredKeys: ['title'] }),
  recs: fc.dictionary(fc.constantFrom(...ids), record),
});

type Sample = { mission: Record<string, unknown>; recs: Record<string, unknown> };

async function decideInSql(samples: Sample[]): Promise<{ status: string; ownId: string | null }[]> {
  const rows = samples.map((s, i) => ({ i, mission: s.mission, recs: s.recs }));
  return db.sql.unsafe(
    `SELECT ${missionAgentStatusSql('x.mission', (id) => `(x.recs -> ${id})`)} AS status, ${missionAgentIdSql('x.mission')} AS "ownId"
     FROM jsonb_to_recordset($1::text::jsonb) AS x(i int, mission jsonb, recs jsonb) ORDER BY x.i`,
    [JSON.stringify(rows)],
  ) as unknown as Promise<{ status: string; ownId: string | null }[]>;
}

describe('the agent rules in SQL', () => {
  it("a mission's agent id and status match agent.ts on random missions and records", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(sample, { minLength: 1, maxLength: 40 }), async (samples) => {
        const got = await decideInSql(samples);
        samples.forEach((s, n) => {
          const want = resolveMissionAgent(s.mission, new Map(Object.entries(s.recs)));
          expect({ n, status: got[n]!.status, ownId: got[n]!.ownId }).toEqual({ n, status: want.status, ownId: missionAgentId(s.mission) });
        });
      }),
      { numRuns: 60 },
    );
  });

  it("a record's status matches readAgent for every odd state and deletedAt", async () => {
    const records = [...[...odd, 'active', 'paused', 'archived', 'Active'].map((st) => ({ state: st })), ...odd.map((d) => ({ deletedAt: d, state: 'active' })), {}];
    const rows = await db.sql.unsafe(`SELECT ${agentStatusSql('r.value')} AS status FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS r(value, n) ORDER BY r.n`, [
      JSON.stringify(records),
    ]);
    expect(rows.map((r) => r['status'])).toEqual(records.map((r) => readAgent('a', r).status));
  });
});
