/**
 * The server planner's one read before a run (readForPlanning) on a real
 * Postgres. A run settles its occurrence only when this read says the
 * settle would close it, so the flag must agree with settleFromSnapshots on
 * every snapshot state (generated here: deleted, paused, unlisted, another
 * author, a stopped agent, rescheduled, the iteration already written, no
 * snapshot at all, and the plain due mission). It also returns the
 * mission's agent records and the user's zone.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { createOccurrences, settleFromSnapshots } from '../../src/schedule/transitions.js';
import { iterationIdFor } from '../../src/schedule/occurrence-id.js';
import { readForPlanning } from '../../src/planner/planning-read.js';
import { DEFAULT_AGENT_ID } from '../../src/agents/agent.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

const DUE = '2026-03-01T08:00:00.000000Z';
const LATER = '2026-03-02T08:00:00.000000Z';

interface SnapshotState {
  exists: boolean;
  present: boolean;
  softDeleted: boolean;
  state: 'active' | 'paused' | 'completed' | null;
  listed: boolean;
  ownAuthor: boolean;
  agentStatus: 'active' | 'paused' | 'archived' | 'deleted' | null;
  nextRunAt: 'due' | 'later' | null;
  hasIteration: boolean;
}

const stateArb: fc.Arbitrary<SnapshotState> = fc.record({
  exists: fc.boolean(),
  present: fc.boolean(),
  softDeleted: fc.boolean(),
  state: fc.constantFrom('active' as const, 'paused' as const, 'completed' as const, null),
  listed: fc.boolean(),
  ownAuthor: fc.boolean(),
  agentStatus: fc.constantFrom('active' as const, 'paused' as const, 'archived' as const, 'deleted' as const, null),
  nextRunAt: fc.constantFrom('due' as const, 'later' as const, null),
  hasIteration: fc.boolean(),
});

/** The plain due mission, which must not be settled. */
const PLAIN: SnapshotState = {
  exists: true, present: true, softDeleted: false, state: 'active', listed: true, ownAuthor: true, agentStatus: 'active', nextRunAt: 'due', hasIteration: false,
};

let seq = 0;

async function occurrenceFor(s: SnapshotState): Promise<{ iterationId: string; userId: string; missionId: string }> {
  const userId = `reader-${++seq}`;
  const missionId = 'm';
  const iterationId = iterationIdFor(userId, missionId, DUE);
  await createOccurrences(db.sql, [{ userId, missionId, nextRunAt: DUE }]);
  if (s.exists) {
    const fields = { title: 't', ...(s.hasIteration ? { iterations: [{ id: iterationId }] } : {}) };
    const next = s.nextRunAt === 'due' ? DUE : s.nextRunAt === 'later' ? LATER : null;
    await db.sql`
      INSERT INTO mana_ai.mission_snapshots (user_id, mission_id, fields, versions, present, soft_deleted, state, next_run_at, listed, author, agent_status)
      VALUES (${userId}, ${missionId}, ${db.sql.json(fields)}, '{}', ${s.present}, ${s.softDeleted}, ${s.state},
              ${next}::text::timestamptz, ${s.listed}, ${s.ownAuthor ? userId : 'someone-else'}, ${s.agentStatus})`;
  }
  return { iterationId, userId, missionId };
}

describe('readForPlanning', () => {
  it('says "unsettled" exactly when settleFromSnapshots closes the occurrence', async () => {
    await fc.assert(
      fc.asyncProperty(stateArb, async (s) => {
        const occ = await occurrenceFor(s);
        const read = await readForPlanning(db.sql, occ.iterationId);
        const settled = await settleFromSnapshots(db.sql, [{ userId: occ.userId, missionId: occ.missionId }]);
        expect(read!.unsettled).toBe(settled.some((o) => o.iterationId === occ.iterationId));
        expect(read!.mission === null).toBe(!(s.exists && s.present && !s.softDeleted));
      }),
      { numRuns: 120, examples: [[PLAIN], [{ ...PLAIN, exists: false }], [{ ...PLAIN, hasIteration: true }]] },
    );
  });

  it("returns the mission, the records of its agent and of the default agent (no other), and the user's zone", async () => {
    const occ = await occurrenceFor({ ...PLAIN });
    await db.sql`UPDATE mana_ai.mission_snapshots SET fields = fields || '{"agentId":"a-1"}' WHERE user_id = ${occ.userId}`;
    await db.sql`
      INSERT INTO mana_ai.agent_snapshots (user_id, agent_id, fields, versions, present)
      VALUES (${occ.userId}, 'a-1', '{"name":"Planner","state":"active"}', '{}', true),
             (${occ.userId}, ${DEFAULT_AGENT_ID}, '{"name":"Mana"}', '{}', true),
             (${occ.userId}, 'a-2', '{"name":"Other"}', '{}', true),
             ('someone-else', 'a-1', '{"name":"Not theirs"}', '{}', true)`;
    await db.sql`INSERT INTO mana_ai.user_time_zones (user_id, time_zone, device_id) VALUES (${occ.userId}, 'Europe/Berlin', 'd1')`;
    const read = await readForPlanning(db.sql, occ.iterationId);
    expect(read!.unsettled).toBe(false);
    expect(read!.mission).toMatchObject({ id: 'm', title: 't', agentId: 'a-1' });
    expect(Object.fromEntries(read!.agents)).toEqual({
      'a-1': { id: 'a-1', name: 'Planner', state: 'active' },
      [DEFAULT_AGENT_ID]: { id: DEFAULT_AGENT_ID, name: 'Mana' },
    });
    expect(read!.zone).toBe('Europe/Berlin');
  });

  it('is null for an occurrence that does not exist', async () => {
    expect(await readForPlanning(db.sql, '00000000-0000-5000-8000-000000000000')).toBeNull();
  });
});
