/**
 * Every server planning run reaches an end: a run that throws is retried and
 * finally fails visibly, a reply already paid for is never asked for again,
 * waiting does not spend planning attempts, a mission paused meanwhile is
 * not planned, an occurrence handed to the planner holds only a short
 * lease until the planner starts, and one handed back while its run is
 * still finishing is run again when that run ends. Real Postgres, a stub mana-llm; each fault
 * is the database's own (a CHECK constraint, a revoked grant) or data a
 * device could write.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { seedRecords, updateMission } from '../support/missions.js';
import { createFallbackSpy, startTestCoordinator } from '../support/coordinator.js';
import { seedAgents } from '../support/agents.js';
import {
  inMs,
  insertPlannableMissions,
  metricValue,
  nextNineUtc,
  occurrenceRows,
  projected,
  runnerRows,
  sleep,
  startPlanningCoordinator,
  waitFor,
  type PlanningCoordinator,
} from './support.js';

let db: TestDb;
let stub: LlmStub | undefined;
const running: PlanningCoordinator[] = [];

beforeEach(async () => {
  db = await createTestDb({ poolMax: 6 });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await stub?.close();
  stub = undefined;
  await db.drop();
});

async function start(env: Record<string, string> = {}, defaultReply?: Parameters<typeof startLlmStub>[0]): Promise<PlanningCoordinator> {
  stub ??= await startLlmStub(defaultReply);
  // A short lease: a run that crashed and left its lease would be retried (and call the LLM) every second.
  const c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'planner-1', CLAIM_LEASE_MS: '1000', ...env });
  running.push(c);
  return c;
}

async function settled(userId: string, status: string, timeoutMs = 15_000, missionId = 'm1') {
  return waitFor(async () => (await occurrenceRows(db.sql, userId)).find((o) => o.status === status && o.missionId === missionId), timeoutMs, `occurrence of ${userId} ${status}`, 50);
}

describe('a run that throws', () => {
  it('an input record whose id is an object with no usable toString is described, not thrown on: the mission is planned once', async () => {
    const c = await start();
    // A goals record as a device could sync it: its id field an object whose toString is not a function.
    await seedRecords(db.sql, [{ userId: 'ann', recordId: 'g1', data: { id: { toString: 'not a function' }, targetDate: '2027-01-01' } }]);
    await db.sql`UPDATE sync_changes SET app_id = 'goals', table_name = 'goals' WHERE record_id = 'g1'`;
    await insertPlannableMissions(db.sql, [{ userId: 'ann', missionId: 'm1', nextRunAt: inMs(-1000), inputs: [{ module: 'goals', table: 'goals', id: 'g1' }] }]);

    const occ = await settled('ann', 'planned');
    await c.planner!.idle();
    expect(occ.attempts).toBe(1);
    expect(stub!.requests).toHaveLength(1);
    expect(stub!.requests[0]!.user).toContain('targetDate: 2027-01-01');
    expect(await metricValue(c, 'mana_ai_planner_runs_total', { outcome: 'error' })).toBe(0);
  });

  it('a reply with NUL characters (JSON accepts them, jsonb does not) is written without them, after one LLM call', async () => {
    const c = await start({}, { kind: 'content', content: JSON.stringify({ summary: 'Tidy\u0000 up', steps: [{ summary: 'A\u0000 task', toolName: 'create_task', params: { title: 'T\u0000itle' }, rationale: 'because\u0000' }] }) });
    await insertPlannableMissions(db.sql, [{ userId: 'ben', missionId: 'm1', nextRunAt: inMs(-1000) }]);

    const occ = await settled('ben', 'planned');
    await c.planner!.idle();
    await sleep(1500);
    expect(stub!.requests).toHaveLength(1);
    const [row] = await runnerRows(db.sql, 'ben');
    expect(row!.data.iterations[0]).toMatchObject({ id: occ.iterationId, summary: 'Tidy up', plan: [expect.objectContaining({ summary: 'A task', rationale: 'because' })] });
    expect(row!.data.iterations[0]!.plan[0]!.intent).toEqual({ kind: 'toolCall', toolName: 'create_task', params: { title: 'Title' } });
  });

  it('a write-back the database refuses is retried without a second LLM call, then ends failed with the error and a public reason; nextRunAt moves', async () => {
    // mana-sync's table refusing this content: every write of the plan fails, a failed iteration does not.
    await db.sql.unsafe(`ALTER TABLE sync_changes ADD CONSTRAINT no_poison CHECK (coalesce(data::text, '') NOT LIKE '%Poisoned%')`);
    const c = await start({ PLANNER_MAX_ATTEMPTS: '3' }, reply.plan(undefined, { summary: 'Poisoned summary' }));
    const before = new Date();
    await insertPlannableMissions(db.sql, [{ userId: 'cat', missionId: 'm1', nextRunAt: inMs(-1000) }]);

    const failed = await settled('cat', 'failed');
    await c.planner!.idle();
    const after = new Date();
    await sleep(1500);
    expect(stub!.requests).toHaveLength(1);
    expect(failed).toMatchObject({ attempts: 3, reason: 'plan-failed', lastError: expect.stringMatching(/no_poison/) });
    const rows = await runnerRows(db.sql, 'cat');
    expect(rows).toHaveLength(1);
    expect(rows[0]!.data.iterations).toEqual([expect.objectContaining({ id: failed.iterationId, overallStatus: 'failed', source: 'server' })]);
    // The failed iteration moves the mission on like any write-back: it runs again at its next due time.
    expect([nextNineUtc(before), nextNineUtc(after)]).toContain(rows[0]!.data.nextRunAt);
    await waitFor(async () => (await projected(db.sql, 'cat', 'm1'))?.iterations?.some((i) => i.id === failed.iterationId), 5000, 'the projection to read it');
    expect(c.warnings('will retry')).toHaveLength(2);
    expect(await metricValue(c, 'mana_ai_planner_runs_total', { outcome: 'error' })).toBe(0);

    const res = await fetch(`${c.url}/v1/occurrences`, { headers: { authorization: `Bearer ${await c.token('cat')}` } });
    expect(((await res.json()) as { reason: unknown }[])[0]!.reason).toEqual({ code: 'plan-failed', message: expect.any(String) });
  });

  it('when not even a failed iteration can be written, the occurrence still ends failed, with a reason of its own', async () => {
    const c = await start({ PLANNER_MAX_ATTEMPTS: '2' });
    // The writer role lost its grant: nothing the planner writes lands.
    await db.sql`REVOKE INSERT ON sync_changes FROM mana_ai_writer`;
    await insertPlannableMissions(db.sql, [{ userId: 'dan', missionId: 'm1', nextRunAt: inMs(-1000) }]);

    const failed = await settled('dan', 'failed');
    await c.planner!.idle();
    await sleep(1500);
    expect(stub!.requests).toHaveLength(1);
    expect(failed).toMatchObject({ attempts: 2, reason: 'plan-unwritable', lastError: expect.stringMatching(/permission denied/) });
    expect(await runnerRows(db.sql, 'dan')).toHaveLength(0);
    expect(c.warnings('could not be written')).toHaveLength(1);
  });
});

describe('attempts', () => {
  it('waiting for the plan budget spends no planning attempt: the first LLM error after it is retried', async () => {
    const c = await start({ PLANNER_MAX_ATTEMPTS: '2', PLANNER_MAX_RETRIES: '0', PLANNER_MAX_PLANS_PER_USER_PER_DAY: '1' });
    stub!.script(reply.serverError());
    // The user's one plan of the day started 24 h ago less 2 s: the budget frees in 2 s.
    await db.sql`INSERT INTO mana_ai.occurrences (iteration_id, user_id, mission_id, due_at, status, server_started_at)
                 VALUES (gen_random_uuid(), 'eve', 'earlier', now() - interval '1 day', 'planned', now() - interval '1 day' + interval '2 seconds')`;
    await insertPlannableMissions(db.sql, [{ userId: 'eve', missionId: 'm1', nextRunAt: inMs(-1000) }]);

    const occ = await settled('eve', 'planned', 20_000);
    await c.planner!.idle();
    const [row] = await db.sql<{ attempts: number; routeAttempts: number }[]>`
      SELECT attempts, route_attempts AS "routeAttempts" FROM mana_ai.occurrences WHERE iteration_id = ${occ.iterationId}`;
    // Waited once (over budget), routed again once, planned on its second planning attempt.
    expect(row).toEqual({ attempts: 2, routeAttempts: 1 });
    expect(stub!.requests).toHaveLength(2);
    expect(await metricValue(c, 'mana_ai_planner_runs_total', { outcome: 'over_budget' })).toBe(1);
  });
});

describe('right before the LLM call', () => {
  it('a mission paused while its run waited for a planner slot is not planned: superseded, no LLM call', async () => {
    // One slot, held 1.5 s by another user's plan; the sweep's settle never runs (no ticks).
    const c = await start({ PLANNER_CONCURRENCY: '1', TICK_ENABLED: 'false' }, (req) => reply.plan(undefined, { delayMs: req.user.includes('Busy mission') ? 1500 : 0 }));
    await insertPlannableMissions(db.sql, [{ userId: 'fay', missionId: 'busy', nextRunAt: inMs(-2000), title: 'Busy mission' }]);
    await c.scheduler.runOnce();
    await waitFor(() => stub!.requestsFor('Busy mission').length === 1, 5000, 'the busy plan to reach the LLM');
    await insertPlannableMissions(db.sql, [{ userId: 'gus', missionId: 'm1', nextRunAt: inMs(-1000), title: 'Paused mission' }]);
    await c.scheduler.runOnce();
    expect((await occurrenceRows(db.sql, 'gus'))[0]).toMatchObject({ status: 'planning' });
    await updateMission(db.sql, 'gus', 'm1', { state: 'paused' });
    await c.projection.refresh();

    await c.planner!.idle();
    expect(stub!.requestsFor('Paused mission')).toHaveLength(0);
    expect((await occurrenceRows(db.sql, 'gus'))[0]).toMatchObject({ status: 'superseded', reason: 'mission-inactive', attempts: 0 });
    expect(await runnerRows(db.sql, 'gus')).toHaveLength(0);
  });
});

describe('the hand-over lease', () => {
  it('an occurrence routed to the server planner holds a short lease until the planner starts, then the full one', async () => {
    const spy = createFallbackSpy();
    const parked = await startTestCoordinator(db.sql, { INSTANCE_ID: 'spy' }, { fallback: spy });
    try {
      await insertPlannableMissions(db.sql, [{ userId: 'hal', missionId: 'm1', nextRunAt: inMs(-1000) }]);
      await waitFor(() => spy.calls.length > 0, 5000, 'the hand-over');
      const [row] = await db.sql<{ leaseS: number }[]>`
        SELECT extract(epoch FROM lease_expires_at - updated_at)::float8 AS "leaseS" FROM mana_ai.occurrences WHERE user_id = 'hal'`;
      // Nobody started planning it: a crash now costs seconds, not CLAIM_LEASE_MS (10 min).
      expect(row!.leaseS).toBeGreaterThan(1);
      expect(row!.leaseS).toBeLessThanOrEqual(10);
    } finally {
      await parked.stop();
    }
    await db.sql`DELETE FROM mana_ai.occurrences`;

    // The real planner extends it as it starts (its LLM call hangs: the lease is the full one meanwhile).
    await start({ CLAIM_LEASE_MS: '600000' }, reply.hang());
    await insertPlannableMissions(db.sql, [{ userId: 'ida', missionId: 'm1', nextRunAt: inMs(-1000) }]);
    const leaseS = await waitFor(async () => {
      const [row] = await db.sql<{ leaseS: number }[]>`
        SELECT extract(epoch FROM lease_expires_at - now())::float8 AS "leaseS" FROM mana_ai.occurrences WHERE user_id = 'ida' AND status = 'planning'`;
      return row && row.leaseS > 500 ? row.leaseS : undefined;
    }, 5000, 'the planner to extend the lease');
    expect(leaseS).toBeLessThanOrEqual(600);
  });
});

describe('a retry taken back while its run is still finishing', () => {
  it("is run once that run ends, not left until the full lease it was given runs out", async () => {
    // First reply unusable (a retry after 100 ms), then a plan. The run that failed then gives its
    // agent slot back; the test holds that slot row locked, so the run is still in flight when its
    // 100 ms retry lease runs out and the sweep hands the occurrence to this planner again.
    await start({ CLAIM_LEASE_MS: '600000', PLANNER_MAX_ATTEMPTS: '3' });
    // The reply comes late enough for the test to lock the slot row first, even on a loaded machine.
    stub!.script({ ...reply.prose(), delayMs: 3000 } as ReturnType<typeof reply.prose>);
    await seedAgents(db.sql, [{ userId: 'jo', agentId: 'legacy:ai-default', maxConcurrentMissions: 2 }]);
    await insertPlannableMissions(db.sql, [{ userId: 'jo', missionId: 'm1', nextRunAt: inMs(-1000) }]);
    await waitFor(() => stub!.requests.length === 1, 10_000, 'the first LLM call');
    const holder = await db.sql.reserve();
    try {
      await holder`BEGIN`;
      await waitFor(async () => (await holder`SELECT 1 FROM mana_ai.agent_slots WHERE user_id = 'jo' FOR UPDATE`).length === 1, 5000, 'the slot row, locked');
      // The failed attempt's retry lease (100 ms) ran out and the sweep took it back while the run waited on the lock.
      await waitFor(async () => {
        const [row] = await db.sql<{ leaseS: number }[]>`
          SELECT extract(epoch FROM lease_expires_at - now())::float8 AS "leaseS" FROM mana_ai.occurrences
          WHERE user_id = 'jo' AND status = 'planning' AND reason = 'plan-retry'`;
        return row && row.leaseS > 500 ? true : undefined;
      }, 5000, 'the failed attempt taken back with the full lease');
      expect(stub!.requests).toHaveLength(1);
    } finally {
      await holder`COMMIT`;
      holder.release();
    }
    await settled('jo', 'planned', 10_000);
    expect(stub!.requests).toHaveLength(2);
  });
});
