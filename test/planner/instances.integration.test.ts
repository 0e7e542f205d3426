/**
 * Server planning across instances on one database: two coordinators (own
 * pools, as two processes would have) ticking over the same due set plan
 * every occurrence once, even with LLM calls longer than the lease (the
 * lease is renewed while the call runs); an occurrence left 'planning' by a
 * dead instance is taken over once its lease expires — not before — and
 * planned once.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSql, type Sql } from '../../src/db/pool.js';
import { parseInstant } from '../../src/projection/instant.js';
import { iterationIdFor } from '../../src/schedule/occurrence-id.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
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
let sqlB: Sql;
let stub: LlmStub;
const running: PlanningCoordinator[] = [];

beforeEach(async () => {
  db = await createTestDb({ poolMax: 6 });
  sqlB = createSql(db.url, { max: 6 });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await stub?.close();
  await sqlB.end({ timeout: 5 });
  await db.drop();
});

async function pair(env: Record<string, string>) {
  const a = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'inst-a', ...env });
  running.push(a);
  const b = await startPlanningCoordinator(sqlB, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'inst-b', ...env });
  running.push(b);
  return { a, b };
}

describe('two coordinator instances', () => {
  it('planning the same due set produce each iteration once, even when LLM calls outlast the lease', { timeout: 60_000 }, async () => {
    // 2 s per call against a 1.5 s lease: only renewal keeps the other instance off.
    stub = await startLlmStub(reply.plan(undefined, { delayMs: 2000 }));
    const { a, b } = await pair({ CLAIM_LEASE_MS: '1500', PLANNER_CONCURRENCY: '8' });
    const users = Array.from({ length: 8 }, (_, i) => `u${i}`);
    const missions = users.flatMap((u) => ['m1', 'm2'].map((m) => ({ userId: u, missionId: m, title: `${u}/${m}` })));
    // Due shortly ahead, staggered: both schedulers wake for each instant, so
    // either may create (and plan) any of them.
    const base = Date.now() + 400;
    const due = missions.map((m, i) => ({ ...m, nextRunAt: new Date(base + i * 60).toISOString() }));
    await insertPlannableMissions(db.sql, due);

    const deadline = Date.now() + 45_000;
    for (;;) {
      const rows = await occurrenceRows(db.sql);
      if (rows.length === missions.length && rows.every((o) => o.status === 'planned')) break;
      if (Date.now() > deadline) throw new Error(`not all planned: ${JSON.stringify(rows.map((o) => [o.missionId, o.status, o.claimedBy, o.attempts, o.lastError]))}`);
      await sleep(50);
    }
    await Promise.all([a.planner!.idle(), b.planner!.idle()]);
    await sleep(500);

    // Count iterations by id across every row the runner wrote.
    const rows = await runnerRows(db.sql);
    const seen = new Map<string, number>();
    for (const r of rows) for (const it of r.data.iterations) seen.set(it.id, (seen.get(it.id) ?? 0) + 1);
    const expected = due.map((m) => iterationIdFor(m.userId, m.missionId, parseInstant(m.nextRunAt)!)).sort();
    expect([...seen.keys()].sort()).toEqual(expected);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(rows).toHaveLength(missions.length);
    // One LLM call per mission: no instance took over a lease that was being renewed.
    for (const m of missions) expect(stub.requestsFor(`# Mission: ${m.title}\n`)).toHaveLength(1);
    expect(stub.requests).toHaveLength(missions.length);
    // Each projected mission carries its iteration exactly once.
    for (const m of due) {
      const p = await projected(db.sql, m.userId, m.missionId);
      expect(p?.iterations?.map((i) => i.id)).toEqual([iterationIdFor(m.userId, m.missionId, parseInstant(m.nextRunAt)!)]);
    }
    const planned = [await metricValue(a, 'mana_ai_planner_runs_total', { outcome: 'planned' }), await metricValue(b, 'mana_ai_planner_runs_total', { outcome: 'planned' })];
    expect(planned[0]! + planned[1]!).toBe(missions.length);
    expect(await metricValue(a, 'mana_ai_planner_runs_total', { outcome: 'lost' })).toBe(0);
    expect(await metricValue(b, 'mana_ai_planner_runs_total', { outcome: 'lost' })).toBe(0);
  });
});

describe('crash safety', () => {
  async function leftByDeadInstance(userId: string, leaseSql: string) {
    const dueAt = inMs(-60_000);
    await insertPlannableMissions(db.sql, [{ userId, missionId: 'm1', nextRunAt: dueAt }]);
    const iterationId = iterationIdFor(userId, 'm1', parseInstant(dueAt)!);
    // What a dead instance leaves behind: planning, its name, its lease.
    await db.sql.unsafe(
      `INSERT INTO mana_ai.occurrences (iteration_id, user_id, mission_id, due_at, status, channel, claimed_by, lease_expires_at, attempts)
       VALUES ($1, $2, 'm1', $3, 'planning', 'server', 'server:dead', ${leaseSql}, 1)`,
      [iterationId, userId, dueAt],
    );
    return iterationId;
  }

  it('an occurrence held by a dead instance is taken over once its lease expired and planned once', async () => {
    stub = await startLlmStub(reply.plan(undefined, { delayMs: 100 }));
    const iterationId = await leftByDeadInstance('alice', "now() - interval '1 second'");
    const { a, b } = await pair({});

    const occ = await waitFor(async () => (await occurrenceRows(db.sql, 'alice')).find((o) => o.status === 'planned'), 10_000, 'planned');
    await Promise.all([a.planner!.idle(), b.planner!.idle()]);
    await sleep(400);
    expect(occ.iterationId).toBe(iterationId);
    expect(['server:inst-a', 'server:inst-b']).toContain(occ.claimedBy);
    expect(occ.attempts).toBe(2);
    expect(stub.requests).toHaveLength(1);
    const rows = await runnerRows(db.sql);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.data.iterations.map((i) => i.id)).toEqual([iterationId]);
  });

  it('a live lease of another holder is respected until it expires', async () => {
    stub = await startLlmStub();
    const iterationId = await leftByDeadInstance('bob', "now() + interval '1 hour'");
    await pair({});
    await sleep(600);
    // Still the other holder's: nobody called the LLM for it.
    expect((await occurrenceRows(db.sql, 'bob'))[0]).toMatchObject({ status: 'planning', claimedBy: 'server:dead' });
    expect(stub.requests).toHaveLength(0);

    // Its lease runs out.
    await db.sql`UPDATE mana_ai.occurrences SET lease_expires_at = now() + interval '200 milliseconds' WHERE iteration_id = ${iterationId}`;
    await waitFor(async () => (await occurrenceRows(db.sql, 'bob'))[0]?.status === 'planned', 10_000, 'planned after the lease expired');
    expect(stub.requests).toHaveLength(1);
    expect(await runnerRows(db.sql)).toHaveLength(1);
  });

  it('a stopped instance hands its leases back: the other one finishes the work without waiting for the lease', async () => {
    // Long lease: without the hand-back the occurrence would sit for 10 minutes.
    let calls = 0;
    stub = await startLlmStub(() => (++calls === 1 ? reply.hang() : reply.plan()));
    const a = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'inst-a' });
    running.push(a);
    await insertPlannableMissions(db.sql, [{ userId: 'carol', missionId: 'm1', nextRunAt: inMs(-1000) }]);
    await waitFor(() => stub.requests.length === 1, 10_000, 'A calling the LLM');
    await a.stop();
    expect((await occurrenceRows(db.sql, 'carol'))[0]).toMatchObject({ status: 'planning', claimedBy: 'server:inst-a' });
    // Handed back, even when A's last pass took the handed-back lease again as expired.
    const [lease] = await db.sql<{ handedBack: boolean }[]>`SELECT lease_expires_at <= now() AS "handedBack" FROM mana_ai.occurrences WHERE user_id = 'carol'`;
    expect(lease!.handedBack).toBe(true);

    const b = await startPlanningCoordinator(sqlB, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'inst-b' });
    running.push(b);
    const occ = await waitFor(async () => (await occurrenceRows(db.sql, 'carol')).find((o) => o.status === 'planned'), 10_000, 'planned by B');
    expect(occ.claimedBy).toBe('server:inst-b');
    expect(stub.requests).toHaveLength(2);
    expect(await runnerRows(db.sql)).toHaveLength(1);
  });
});
