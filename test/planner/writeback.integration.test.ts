/**
 * The write-back's guarantees against a real Postgres: the forced RLS
 * policy is in force while the server writes (the embedded login is a
 * superuser, so this only holds because the write switches role); a holder
 * that lost its lease writes nothing, and a second write of one iteration
 * is impossible; a concurrent device write that drops the server's
 * iteration is repaired, once, even when the device's clock runs ahead.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { detectSyncColumns } from '../../src/projection/change-source.js';
import { instantOf } from '../../src/projection/instant.js';
import { detectSpaceColumn, insertMissionUpdate, writeIteration, type WriteTarget } from '../../src/planner/writeback.js';
import { aiActor } from '../../src/planner/writeback-row.js';
import { planIteration } from '../../src/planner/iteration.js';
import { takeExpired } from '../../src/schedule/transitions.js';
import type { MissionIteration } from '../../src/projection/mission.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub, type StubReply } from '../support/llm-stub.js';
import {
  inMs,
  insertPlannableMissions,
  metricValue,
  occurrenceRows,
  projected,
  runnerRows,
  sleep,
  startPlanningCoordinator,
  waitFor,
  type PlanningCoordinator,
} from './support.js';

let db: TestDb;
let target: WriteTarget;
let stub: LlmStub | undefined;
const running: PlanningCoordinator[] = [];

beforeEach(async () => {
  db = await createTestDb({ poolMax: 6 });
  target = { cols: await detectSyncColumns(db.sql), spaceColumn: await detectSpaceColumn(db.sql, 'public'), writerRole: 'mana_ai_writer' };
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await stub?.close();
  stub = undefined;
  await db.drop();
});

const PLAN = { summary: 'Do it', steps: [{ summary: 'Task', toolName: 'create_task', params: { title: 'T' }, rationale: 'R' }] };

async function heldOccurrence(iterationId: string, userId: string, holder: string, leaseSql = "now() + interval '1 minute'") {
  // The mission must exist in the log: a write-back never re-creates a deleted (or absent) record.
  await db.sql.unsafe(
    `INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
     SELECT 'ai', 'aiMissions', 'm1', $1, 'insert', '{"title":"t","state":"active","iterations":[]}', 'test'
     WHERE NOT EXISTS (SELECT 1 FROM sync_changes WHERE record_id = 'm1' AND user_id = $1)`,
    [userId],
  );
  await db.sql.unsafe(
    `INSERT INTO mana_ai.occurrences (iteration_id, user_id, mission_id, due_at, status, channel, claimed_by, lease_expires_at, attempts)
     VALUES ($1, $2, 'm1', now() - interval '1 minute', 'planning', 'server', $3, ${leaseSql}, 1)`,
    [iterationId, userId, holder],
  );
}

function writeInput(iterationId: string, userId: string, holder: string) {
  const at = new Date();
  return {
    userId,
    missionId: 'm1',
    iterationId,
    holder,
    iteration: planIteration(iterationId, PLAN, at.toISOString(), at.toISOString()),
    baseIterations: [],
    nextRunAt: inMs(86_400_000),
    finalStatus: 'planned' as const,
    at,
  };
}

/** An update of mission m1 for `userId` setting `data`. */
const update = (userId: string, data: Record<string, unknown>) => ({
  userId,
  missionId: 'm1',
  data,
  at: new Date(),
  actor: aiActor({ missionId: 'm1', iterationId: '33333333-3333-5333-8333-333333333333' }),
  spaceId: null,
});

const pgCode = (err: unknown) => (err as { code?: string }).code;

describe('RLS while writing', () => {
  it('the login is a superuser, yet the write runs as mana_ai_writer with app.current_user_id set: a row of another user is refused (42501)', async () => {
    const [who] = await db.sql<{ superuser: boolean }[]>`SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = current_user`;
    // Otherwise this test would prove nothing: a superuser bypasses even FORCEd RLS.
    expect(who!.superuser).toBe(true);

    let failure: unknown;
    await db.sql
      .begin(async (tx) => {
        await insertMissionUpdate(tx, target, update('alice', { nextRunAt: null }));
        const [ctx] = await tx<{ role: string; uid: string }[]>`SELECT current_user AS role, current_setting('app.current_user_id', true) AS uid`;
        expect(ctx).toEqual({ role: 'mana_ai_writer', uid: 'alice' });
        // Still inside the write's transaction: a row whose user_id differs from app.current_user_id.
        await tx`INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
                 VALUES ('ai', 'aiMissions', 'm1', 'bob', 'update', '{}'::jsonb, 'mana-ai-runner')`;
      })
      .catch((err: unknown) => {
        failure = err;
      });
    expect(pgCode(failure)).toBe('42501');
    expect(String((failure as Error).message)).toMatch(/row-level security/);
    expect(await runnerRows(db.sql)).toHaveLength(0);
  });

  describe('with the row user_id made to differ from app.current_user_id', () => {
    // A BEFORE INSERT trigger runs before the policy's WITH CHECK: it makes
    // the row's user_id differ from the user the write set, as a bug would.
    beforeEach(async () => {
      await db.sql.unsafe(`
        CREATE FUNCTION test_wrong_user() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.user_id := NEW.user_id || '-other'; RETURN NEW; END $$;
        CREATE TRIGGER test_wrong_user BEFORE INSERT ON sync_changes
          FOR EACH ROW WHEN (NEW.client_id = 'mana-ai-runner') EXECUTE FUNCTION test_wrong_user();`);
    });

    it('insertMissionUpdate fails with an RLS violation', async () => {
      const err = await db.sql
        .begin((tx) => insertMissionUpdate(tx, target, update('alice', { nextRunAt: null })))
        .then(() => null, (e: unknown) => e);
      expect(pgCode(err)).toBe('42501');
      expect(await runnerRows(db.sql)).toHaveLength(0);
    });

    it('writeIteration fails with an RLS violation and the occurrence stays planning (the CAS rolled back with it)', async () => {
      const id = '11111111-1111-5111-8111-111111111111';
      await heldOccurrence(id, 'alice', 'server:a');
      const err = await writeIteration(db.sql, target, writeInput(id, 'alice', 'server:a')).then(() => null, (e: unknown) => e);
      expect(pgCode(err)).toBe('42501');
      expect(await runnerRows(db.sql)).toHaveLength(0);
      expect((await occurrenceRows(db.sql, 'alice'))[0]).toMatchObject({ status: 'planning', claimedBy: 'server:a' });
    });

    it('control: without the writer role the superuser login bypasses the policy and the wrong row lands', async () => {
      await db.sql.begin((tx) =>
        insertMissionUpdate(tx, { ...target, writerRole: undefined }, update('alice', { nextRunAt: null })),
      );
      expect((await runnerRows(db.sql)).map((r) => r.userId)).toEqual(['alice-other']);
    });
  });
});

describe('lease and idempotence', () => {
  it("a write-back after the holder lost the lease writes nothing ('lost'); the new holder writes once; a repeat is 'lost'", async () => {
    const id = '22222222-2222-5222-8222-222222222222';
    // Held by A, lease expired; B takes it over through the ledger's own takeover query.
    await heldOccurrence(id, 'alice', 'server:a', "now() - interval '1 second'");
    const taken = await takeExpired(db.sql, 'server:b', 60_000, 10);
    expect(taken.map((o) => [o.iterationId, o.claimedBy])).toEqual([[id, 'server:b']]);

    // A's LLM call finally returns: its write must not land.
    expect(await writeIteration(db.sql, target, writeInput(id, 'alice', 'server:a'))).toBe('lost');
    expect(await runnerRows(db.sql)).toHaveLength(0);
    expect((await occurrenceRows(db.sql, 'alice'))[0]).toMatchObject({ status: 'planning', claimedBy: 'server:b' });

    expect(await writeIteration(db.sql, target, writeInput(id, 'alice', 'server:b'))).toBe('written');
    expect(await writeIteration(db.sql, target, writeInput(id, 'alice', 'server:b'))).toBe('lost');
    const rows = await runnerRows(db.sql);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.data.iterations.map((i) => i.id)).toEqual([id]);
    expect((await occurrenceRows(db.sql, 'alice'))[0]).toMatchObject({ status: 'planned', claimedBy: 'server:b' });
  });

  it('two holders racing to write one iteration: exactly one row', async () => {
    const id = '33333333-3333-5333-8333-333333333333';
    await heldOccurrence(id, 'alice', 'server:a');
    const results = await Promise.all(Array.from({ length: 6 }, () => writeIteration(db.sql, target, writeInput(id, 'alice', 'server:a'))));
    expect(results.filter((r) => r === 'written')).toHaveLength(1);
    expect(await runnerRows(db.sql)).toHaveLength(1);
  });
});

describe('repairing a dropped write', () => {
  async function planOne(userId: string) {
    stub = await startLlmStub();
    const c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'repairer' });
    running.push(c);
    await insertPlannableMissions(db.sql, [{ userId, missionId: 'm1', nextRunAt: inMs(-1000) }]);
    const occ = await waitFor(async () => (await occurrenceRows(db.sql, userId)).find((o) => o.status === 'planned'), 10_000, 'planned');
    await c.planner!.idle();
    await waitFor(async () => (await projected(db.sql, userId, 'm1'))?.iterations?.length === 1, 5000, 'projection shows the iteration');
    return { c, occ };
  }

  /** A device's update of the whole iterations array, stamped `at` (its own clock). */
  async function deviceWritesIterations(userId: string, iterations: unknown[], at: string) {
    await db.sql`
      INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin, actor)
      VALUES ('ai', 'aiMissions', 'm1', ${userId}, 'update', ${db.sql.json({ iterations } as never)},
              ${db.sql.json({ iterations: at } as never)},
              'device-1', 'user', ${db.sql.json({ kind: 'user' })})`;
  }

  const hasOurs = async (userId: string, id: string) => Boolean((await projected(db.sql, userId, 'm1'))?.iterations?.some((i) => i.id === id));

  it('a device write of iterations: [] stamped after ours drops the iteration; the planner writes it again, merged, and counts it', async () => {
    const { c, occ } = await planOne('alice');
    const nextRunBefore = (await projected(db.sql, 'alice', 'm1'))!.nextRunAt;
    await deviceWritesIterations('alice', [], new Date().toISOString());
    await waitFor(async () => (await runnerRows(db.sql, 'alice')).length === 2 || !(await hasOurs('alice', occ.iterationId)), 5000, 'the device write applied');

    await waitFor(() => hasOurs('alice', occ.iterationId), 5000, 'the iteration to be back');
    await sleep(400);
    const rows = await runnerRows(db.sql, 'alice');
    expect(rows).toHaveLength(2);
    // The repair writes iterations only: the device may have moved nextRunAt on.
    expect(Object.keys(rows[1]!.data).sort()).toEqual(['iterations']);
    expect(rows[1]!.data.iterations.map((i) => i.id)).toEqual([occ.iterationId]);
    expect(await metricValue(c, 'mana_ai_writeback_repairs_total')).toBe(1);
    expect((await occurrenceRows(db.sql, 'alice'))[0]!.repairs).toBe(1);
    const m = (await projected(db.sql, 'alice', 'm1'))!;
    expect(m.iterations!.map((i) => i.id)).toEqual([occ.iterationId]);
    expect(m.nextRunAt).toBe(nextRunBefore);
  });

  it("a device whose clock runs ahead: the device's own iteration is kept, ours is merged back, with one repair, not one per pass", async () => {
    const { c, occ } = await planOne('bob');
    const deviceIt: MissionIteration = { id: 'device-it', startedAt: new Date().toISOString(), plan: [], overallStatus: 'running', source: 'browser' };
    // 3 s ahead: a repair stamped with the server's "now" would lose LWW again on every pass.
    await deviceWritesIterations('bob', [deviceIt], instantOf(new Date(Date.now() + 3000)));
    await waitFor(async () => (await projected(db.sql, 'bob', 'm1'))?.iterations?.[0]?.id === 'device-it', 5000, 'the device write applied');

    await waitFor(() => hasOurs('bob', occ.iterationId), 5000, 'the iteration to be back');
    await sleep(600);
    const m = (await projected(db.sql, 'bob', 'm1'))!;
    expect(m.iterations!.map((i) => i.id)).toEqual(['device-it', occ.iterationId]);
    expect(await runnerRows(db.sql, 'bob')).toHaveLength(2);
    expect(await metricValue(c, 'mana_ai_writeback_repairs_total')).toBe(1);
  });

  it('a device write that keeps the iteration (e.g. the user approved a step) needs no repair', async () => {
    const { c, occ } = await planOne('carl');
    const its = (await projected(db.sql, 'carl', 'm1'))!.iterations!;
    const approved = its.map((i) => ({ ...i, overallStatus: 'approved' }));
    await deviceWritesIterations('carl', approved, new Date().toISOString());
    await waitFor(async () => (await projected(db.sql, 'carl', 'm1'))?.iterations?.[0]?.overallStatus === 'approved', 5000, 'device write applied');
    await sleep(400);
    expect(await runnerRows(db.sql, 'carl')).toHaveLength(1);
    expect(await metricValue(c, 'mana_ai_writeback_repairs_total')).toBe(0);
    expect((await projected(db.sql, 'carl', 'm1'))!.iterations!.map((i) => [i.id, i.overallStatus])).toEqual([[occ.iterationId, 'approved']]);
  });
});

describe('merging with what a device wrote while the LLM was thinking', () => {
  // The device appends its own iteration while the server's LLM call runs; the
  // server's write, stamped later, must carry it (the freshest projection), or
  // LWW on the one `iterations` field would drop the device's work.
  const CASES: [string, StubReply, Record<string, string>, string][] = [
    ['a planned iteration', reply.plan(undefined, { delayMs: 1200 }), {}, 'planned'],
    ["a final 'failed' iteration", { kind: 'content', content: 'Sorry, I cannot help with that.', delayMs: 1200 }, { PLANNER_MAX_ATTEMPTS: '1' }, 'failed'],
  ];

  it.each(CASES)('%s is merged into the iterations as they are after the call', async (_name, answer, env, status) => {
    stub = await startLlmStub(answer);
    const c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'merger', ...env });
    running.push(c);
    const old = { id: 'old-1', startedAt: '2026-01-01T09:00:00.000Z', plan: [], overallStatus: 'approved', source: 'browser' };
    await insertPlannableMissions(db.sql, [{ userId: 'dana', missionId: 'm1', nextRunAt: inMs(-1000), iterations: [old] }]);
    await waitFor(() => stub!.requests.length === 1, 10_000, 'the LLM call');

    const deviceIt = { id: 'device-it', startedAt: new Date().toISOString(), plan: [], overallStatus: 'awaiting-review', source: 'browser' };
    await db.sql`
      INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin)
      VALUES ('ai', 'aiMissions', 'm1', 'dana', 'update', ${db.sql.json({ iterations: [old, deviceIt] } as never)},
              ${db.sql.json({ iterations: new Date().toISOString() })}, 'device-1', 'user')`;
    await waitFor(async () => (await projected(db.sql, 'dana', 'm1'))?.iterations?.length === 2, 5000, 'the device write projected');

    const occ = await waitFor(async () => (await occurrenceRows(db.sql, 'dana')).find((o) => o.status === status), 10_000, status);
    await c.planner!.idle();
    const [row] = await runnerRows(db.sql, 'dana');
    expect(row!.data.iterations.map((i) => i.id)).toEqual(['old-1', 'device-it', occ.iterationId]);
    await waitFor(async () => (await projected(db.sql, 'dana', 'm1'))?.iterations?.length === 3, 5000, 'our write projected');
    expect((await projected(db.sql, 'dana', 'm1'))!.iterations!.map((i) => i.id)).toEqual(['old-1', 'device-it', occ.iterationId]);
  });
});

describe('a mission deleted while the server planned it', () => {
  it('is not re-created by the write-back: nothing written, the occurrence superseded', async () => {
    const target = { cols: await detectSyncColumns(db.sql), spaceColumn: await detectSpaceColumn(db.sql, 'public'), writerRole: 'mana_ai_writer' };
    const id = '33333333-3333-5333-8333-333333333333';
    await heldOccurrence(id, 'carol', 'server:a');
    await db.sql`INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
                 VALUES ('ai', 'aiMissions', 'm1', 'carol', 'delete', NULL, 'test')`;
    expect(await writeIteration(db.sql, target, writeInput(id, 'carol', 'server:a'))).toBe('gone');
    expect(await runnerRows(db.sql)).toHaveLength(0);
    expect((await occurrenceRows(db.sql, 'carol'))[0]).toMatchObject({ status: 'superseded' });
  });
});

describe('created_at of a write-back', () => {
  it("is stamped at the insert, so a device's pull between the transaction's start and its commit does not pass it", async () => {
    // mana-sync serves `created_at > since`, `since` being when the device's previous pull ended.
    const pull = async (since: string) =>
      db.sql<{ id: string }[]>`SELECT id::text FROM sync_changes WHERE user_id = 'eve' AND client_id = 'mana-ai-runner' AND created_at > ${since}::text::timestamptz`;
    let since = "";
    await db.sql.begin(async (tx) => {
      // The transaction has started (a write-back reads and checks before it inserts) when a device pulls:
      // the row is not there yet, and the pull ends with `since` past this transaction's start.
      await tx`SELECT 1`;
      expect(await pull('-infinity')).toEqual([]);
      since = (await db.sql<{ since: string }[]>`SELECT clock_timestamp()::text AS since`)[0]!.since;
      await sleep(50);
      await insertMissionUpdate(tx, target, update('eve', { nextRunAt: null }));
    });
    // The device's next pull finds the row: its created_at is after that pull's end.
    expect(await pull(since)).toHaveLength(1);
    const [row] = await db.sql<{ late: boolean }[]>`SELECT created_at > ${since}::text::timestamptz AS late FROM sync_changes WHERE user_id = 'eve'`;
    expect(row!.late).toBe(true);
  });
});
