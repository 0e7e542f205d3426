/**
 * Every row the coordinator writes into the change log reads back through
 * a reader as strict as mana-sync's pull and the webapp's check
 * (test/support/mana-sync-read.ts), and yields the fields we meant: a plan,
 * an empty plan, a failed iteration, a manual cadence (no next run), a
 * mission in a space, and the repair of a write a device dropped. The
 * iterations are ones the webapp runs on arrival. And the user's whole pull
 * (device rows and ours, in mana-sync's order) reads without a failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { seedMissions } from '../support/missions.js';
import { readLikeManaSync, storedRows, type WireChange } from '../support/mana-sync-read.js';
import { serverIterationProblems } from '../support/server-iteration.js';
import { RUNNER_CLIENT_ID } from '../../src/planner/writeback.js';
import { inMs, occurrenceRows, projected, startPlanningCoordinator, waitFor, type PlanningCoordinator } from './support.js';

let db: TestDb;
let stub: LlmStub;
let c: PlanningCoordinator;
let started: Date;

const missions = [
  { userId: 'rt-alice', missionId: 'm-plan', nextRunAt: inMs(-1000), title: 'Plan it' },
  { userId: 'rt-bob', missionId: 'm-fail', nextRunAt: inMs(-1000), title: 'Always prose' },
  { userId: 'rt-carol', missionId: 'm-space', nextRunAt: inMs(-1000), title: 'In a space', extra: { spaceId: 'space-7', authorId: 'rt-carol' } },
  { userId: 'rt-dana', missionId: 'm-manual', nextRunAt: inMs(-1000), title: 'Nothing to do', cadence: { kind: 'manual' } },
  { userId: 'rt-erin', missionId: 'm-drop', nextRunAt: inMs(-1000), title: 'Dropped then repaired' },
];

beforeAll(async () => {
  db = await createTestDb({ poolMax: 8 });
  stub = await startLlmStub((req) => (req.user.includes('Always prose') ? reply.prose() : req.user.includes('Nothing to do') ? reply.emptyPlan() : reply.plan()));
  c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, PLANNER_MAX_ATTEMPTS: '2', INSTANCE_ID: 'roundtrip' });
  started = new Date();
  await seedMissions(db.sql, missions, { clientId: 'device-1' });
  await waitFor(async () => ((await occurrenceRows(db.sql)).filter((o) => o.status === 'planned' || o.status === 'failed').length === missions.length ? true : undefined), 20_000, 'every mission planned or failed');
  await c.planner!.idle();

  // A device rewrites erin's iterations without ours (stamped after it): the planner repairs the drop.
  const [erin] = await occurrenceRows(db.sql, 'rt-erin');
  await waitFor(async () => ((await projected(db.sql, 'rt-erin', 'm-drop'))?.iterations?.length === 1 ? true : undefined), 5000, 'erin projected');
  await db.sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin, actor)
    VALUES ('ai', 'aiMissions', 'm-drop', 'rt-erin', 'update', ${db.sql.json({ iterations: [] })}, ${db.sql.json({ iterations: new Date().toISOString() })},
            'device-1', 'user', ${db.sql.json({ kind: 'user', principalId: 'rt-erin', displayName: 'Du' })})`;
  await waitFor(async () => ((await projected(db.sql, 'rt-erin', 'm-drop'))?.iterations?.some((i) => i.id === erin!.iterationId) && (await runnerRows('rt-erin')).length === 2 ? true : undefined), 10_000, 'the repair');
}, 60_000);

afterAll(async () => {
  await c?.stop();
  await stub?.close();
  await db?.drop();
});

async function runnerRows(userId: string) {
  return storedRows(db.sql, { userId, clientId: RUNNER_CLIENT_ID });
}

/** The user's runner rows as a device receives them; fails on the first row mana-sync or the webapp would refuse. */
async function received(userId: string): Promise<WireChange[]> {
  return (await runnerRows(userId)).map((row) => {
    const out = readLikeManaSync(row);
    if (!out.ok) throw new Error(`row ${row.id} of ${userId} refused at ${out.stage}: ${out.error}`);
    return out.change;
  });
}

/** The iteration the ledger says we wrote for the user's occurrence. */
async function ledgerPlan(userId: string) {
  const [row] = await db.sql<{ iterationId: string; plan: Record<string, unknown>; status: string }[]>`
    SELECT iteration_id::text AS "iterationId", plan, status FROM mana_ai.occurrences WHERE user_id = ${userId}`;
  return row!;
}

function expectOurs(change: WireChange, missionId: string, iterationId: string, fields: string[]) {
  expect(change).toMatchObject({ table: 'aiMissions', id: missionId, op: 'update', origin: 'agent' });
  expect(change.actor).toEqual({ kind: 'ai', principalId: 'legacy:ai-default', displayName: 'Mana', missionId, iterationId, rationale: 'Make visible progress this week' });
  expect(Object.keys(change.fields ?? {}).sort()).toEqual(fields);
  for (const f of Object.values(change.fields!)) {
    expect(new Date(f.at).toISOString()).toBe(f.at);
    expect(Date.parse(f.at)).toBeGreaterThanOrEqual(started.getTime());
  }
}

describe('each write-back reads back as the fields we meant', () => {
  it.each([
    ['a plan', 'rt-alice', 'm-plan', 'planned', 2],
    ['a failed iteration', 'rt-bob', 'm-fail', 'failed', 0],
    ['an empty plan', 'rt-dana', 'm-manual', 'planned', 0],
    ['a mission in a space', 'rt-carol', 'm-space', 'planned', 2],
  ])('%s', async (_name, userId, missionId, status, steps) => {
    const ledger = await ledgerPlan(userId);
    expect(ledger.status).toBe(status);
    const [change, ...more] = await received(userId);
    expect(more).toEqual([]);
    expectOurs(change!, missionId, ledger.iterationId, ['iterations', 'nextRunAt']);
    const iterations = change!.fields!['iterations']!.value as Record<string, unknown>[];
    expect(iterations).toEqual([ledger.plan]);
    expect(iterations[0]!['plan']).toHaveLength(steps);
    expect(serverIterationProblems(iterations[0])).toEqual([]);
    if (steps > 0) expect((iterations[0]!['plan'] as { status: string }[]).every((s) => s.status === 'planned')).toBe(true);
    const next = change!.fields!['nextRunAt']!.value;
    // A manual cadence has no next run: null, as the webapp's own run leaves it on the wire.
    if (missionId === 'm-manual') expect(next).toBeNull();
    else expect(typeof next === 'string' && Date.parse(next) > started.getTime()).toBe(true);
    expect(change!.spaceId).toBe(missionId === 'm-space' ? 'space-7' : undefined);
  });

  it('the repair of a dropped write: iterations only, ours merged back, stamped after the write that dropped it', async () => {
    const ledger = await ledgerPlan('rt-erin');
    const [plan, repair, ...more] = await received('rt-erin');
    expect(more).toEqual([]);
    expectOurs(plan!, 'm-drop', ledger.iterationId, ['iterations', 'nextRunAt']);
    expectOurs(repair!, 'm-drop', ledger.iterationId, ['iterations']);
    expect(repair!.fields!['iterations']!.value).toEqual([ledger.plan]);
    const [deviceRow] = await db.sql<{ at: string }[]>`SELECT field_meta ->> 'iterations' AS at FROM sync_changes WHERE client_id = 'device-1' AND user_id = 'rt-erin' AND op = 'update'`;
    expect(repair!.fields!['iterations']!.at >= deviceRow!.at).toBe(true);
  });

  it("every user's whole pull reads without a failure, in mana-sync's order", async () => {
    for (const { userId } of missions) {
      const rows = await storedRows(db.sql, { userId });
      expect(rows.length).toBeGreaterThan(1);
      const refused = rows.map(readLikeManaSync).filter((o) => !o.ok);
      expect(refused, userId).toEqual([]);
    }
  });
});
