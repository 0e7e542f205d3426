/**
 * Server fallback planning end to end: a coordinator with no device online
 * for the user, a stub mana-llm, a real Postgres. A due mission becomes an
 * occurrence, the server plans it and writes ONE sync_changes row, and the
 * projection reads the iteration back. Bad replies and LLM failures are
 * retried and finally become a visible 'failed' iteration; an encrypted
 * mission never reaches the LLM; without MANA_LLM_URL occurrences wait.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { iterationIdFor } from '../../src/schedule/occurrence-id.js';
import { parseInstant } from '../../src/projection/instant.js';
import { WAIT_REASON } from '../../src/schedule/waiting.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub, type StubReply } from '../support/llm-stub.js';
import {
  inMs,
  insertPlannableMissions,
  metricValue,
  nextNineUtc,
  occurrenceRows,
  projected,
  runnerRows,
  SERVICE_KEY,
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
  stub = await startLlmStub(defaultReply);
  const c = await startPlanningCoordinator(db.sql, { MANA_LLM_URL: stub.url, INSTANCE_ID: 'planner-1', ...env });
  running.push(c);
  return c;
}

async function settledOccurrence(userId: string, status: 'planned' | 'failed' | 'waiting', timeoutMs = 10_000) {
  return waitFor(async () => (await occurrenceRows(db.sql, userId)).find((o) => o.status === status), timeoutMs, `occurrence of ${userId} ${status}`);
}

/** Waits until the projection shows the iteration, then returns the mission. */
async function projectedWith(userId: string, missionId: string, iterationId: string) {
  return waitFor(async () => {
    const m = await projected(db.sql, userId, missionId);
    return m?.iterations?.some((it) => it.id === iterationId) ? m : undefined;
  }, 5000, 'the projection to show the iteration');
}

describe('a valid plan', () => {
  it('becomes exactly one iteration in sync_changes that the projection reads back, nextRunAt advanced, occurrence planned', async () => {
    const c = await start();
    const dueAt = inMs(-60_000);
    const before = new Date();
    await insertPlannableMissions(db.sql, [{ userId: 'alice', missionId: 'm1', nextRunAt: dueAt, title: 'Quarterly report' }]);

    const occ = await settledOccurrence('alice', 'planned');
    await c.planner!.idle();
    const after = new Date();
    expect(occ.iterationId).toBe(iterationIdFor('alice', 'm1', parseInstant(dueAt)!));
    expect(occ).toMatchObject({ channel: 'server', claimedBy: 'server:planner-1', attempts: 1, lastError: null });

    // What was sent to mana-llm: the contract's request, the mission in the user message.
    expect(stub!.requests).toHaveLength(1);
    const req = stub!.requests[0]!;
    expect(req.authorization).toBe(`Bearer ${SERVICE_KEY}`);
    expect(req.body).toMatchObject({ model: 'mana-default', temperature: expect.any(Number) });
    expect(req.body!.messages!.map((m) => m.role)).toEqual(['system', 'user']);
    expect(req.user).toContain('Quarterly report');
    expect(req.user).toContain('Finish the quarterly report');
    expect(req.system).toContain('create_task');

    // Exactly one row, shaped as docs/contract.md §6 says.
    const rows = await runnerRows(db.sql);
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row).toMatchObject({ userId: 'alice', recordId: 'm1', op: 'update', clientId: 'mana-ai-runner', origin: 'agent' });
    // The webapp's AI actor, for the default agent (the mission names none); the rationale is the objective.
    expect(row.actor).toEqual({ kind: 'ai', principalId: 'legacy:ai-default', displayName: 'Mana', missionId: 'm1', iterationId: occ.iterationId, rationale: 'Finish the quarterly report' });
    // Exactly the fields written, each stamped with one toISOString() string.
    expect(Object.keys(row.data).sort()).toEqual(['iterations', 'nextRunAt']);
    expect(Object.keys(row.fieldMeta).sort()).toEqual(['iterations', 'nextRunAt']);
    const stamp = row.fieldMeta['iterations']!;
    expect(new Date(stamp).toISOString()).toBe(stamp);
    expect(Date.parse(stamp)).toBeGreaterThanOrEqual(before.getTime());
    expect(Date.parse(stamp)).toBeLessThanOrEqual(after.getTime());
    expect(row.fieldMeta['nextRunAt']).toBe(stamp);
    expect(row.data.iterations).toHaveLength(1);
    const it0 = row.data.iterations[0]!;
    expect(it0).toMatchObject({ id: occ.iterationId, source: 'server', overallStatus: 'awaiting-review', summary: 'Move the mission forward' });
    expect(it0.plan).toEqual([
      {
        id: `${occ.iterationId}-0`,
        summary: 'Write down the next task',
        intent: { kind: 'toolCall', toolName: 'create_task', params: { title: 'Draft the outline', priority: 'high' } },
        rationale: 'The objective needs an outline first',
        status: 'planned',
      },
      {
        id: `${occ.iterationId}-1`,
        summary: 'Note the idea',
        intent: { kind: 'toolCall', toolName: 'create_note', params: { title: 'Ideas', body: 'First thoughts' } },
        rationale: 'Keeps the context for the next run',
        status: 'planned',
      },
    ]);
    // The daily cadence (09:00 UTC) moved nextRunAt past now.
    expect([nextNineUtc(before), nextNineUtc(after)]).toContain(row.data.nextRunAt);

    // The projection reads it back; the mission is no longer due.
    const m = await projectedWith('alice', 'm1', occ.iterationId);
    expect(m.iterations!.filter((i) => i.id === occ.iterationId)).toHaveLength(1);
    expect(Date.parse(m.nextRunAt!)).toBe(Date.parse(row.data.nextRunAt!));
    expect(Date.parse(m.nextRunAt!)).toBeGreaterThan(Date.now());
    // More passes change nothing: no second occurrence, call or row.
    await sleep(500);
    expect(await occurrenceRows(db.sql, 'alice')).toEqual([expect.objectContaining({ iterationId: occ.iterationId, status: 'planned' })]);
    expect(stub!.requests).toHaveLength(1);
    expect(await runnerRows(db.sql)).toHaveLength(1);
    expect(await metricValue(c, 'mana_ai_planner_runs_total', { outcome: 'planned' })).toBe(1);
  });

  it("an empty plan is a no-op run: iteration 'approved' with no steps, appended after the existing ones", async () => {
    const c = await start({}, reply.emptyPlan());
    const earlier = { id: 'old-1', startedAt: '2026-01-01T09:00:00.000Z', plan: [], overallStatus: 'approved', source: 'browser', userFeedback: 'more tasks please' };
    await insertPlannableMissions(db.sql, [{ userId: 'bob', missionId: 'm1', nextRunAt: inMs(-1000), iterations: [earlier] }]);

    const occ = await settledOccurrence('bob', 'planned');
    await c.planner!.idle();
    const [row] = await runnerRows(db.sql);
    expect(row!.data.iterations).toEqual([earlier, expect.objectContaining({ id: occ.iterationId, overallStatus: 'approved', plan: [], source: 'server' })]);
    // The prompt showed the earlier iteration and its feedback.
    expect(stub!.requests[0]!.user).toContain('more tasks please');
    const m = await projectedWith('bob', 'm1', occ.iterationId);
    expect(m.iterations!.map((i) => i.id)).toEqual(['old-1', occ.iterationId]);
  });
});

describe('bad replies and LLM failures', () => {
  const BAD: [string, () => StubReply, RegExp][] = [
    ['prose', reply.prose, /no JSON object found/],
    ['invalid JSON', reply.invalidJson, /invalid JSON/],
    ['a step without its required parameter', reply.missingParam, /title: missing/],
    ['a missing rationale', reply.missingRationale, /missing rationale/],
  ];

  it.each(BAD)('%s is retried after the backoff and the next valid plan is written', async (_name, bad, reason) => {
    const c = await start();
    stub!.script(bad());
    await insertPlannableMissions(db.sql, [{ userId: 'carol', missionId: 'm1', nextRunAt: inMs(-1000) }]);

    const occ = await settledOccurrence('carol', 'planned');
    await c.planner!.idle();
    expect(occ.attempts).toBe(2);
    expect(stub!.requests).toHaveLength(2);
    // PLANNER_RETRY_BACKOFF_MS=100: the retry waited, it did not spin.
    expect(stub!.requests[1]!.at - stub!.requests[0]!.at).toBeGreaterThanOrEqual(90);
    const rows = await runnerRows(db.sql);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.data.iterations).toEqual([expect.objectContaining({ id: occ.iterationId, overallStatus: 'awaiting-review' })]);
    expect(c.warnings('will retry')).toEqual([expect.objectContaining({ reason: expect.stringMatching(reason) })]);
  });

  it("after PLANNER_MAX_ATTEMPTS bad replies writes a 'failed' iteration with the reason and advances nextRunAt; other missions are planned meanwhile", async () => {
    const bad = [reply.prose(), reply.invalidJson(), reply.missingParam(), reply.missingRationale()];
    let badCalls = 0;
    const c = await start({ PLANNER_MAX_ATTEMPTS: '4' }, (req) => (req.user.includes('Doomed') ? bad[badCalls++ % bad.length]! : reply.plan()));
    const before = new Date();
    await insertPlannableMissions(db.sql, [
      { userId: 'dave', missionId: 'doomed', nextRunAt: inMs(-1000), title: 'Doomed mission' },
      { userId: 'erin', missionId: 'fine', nextRunAt: inMs(-1000), title: 'Fine mission' },
    ]);

    const failed = await settledOccurrence('dave', 'failed');
    await c.planner!.idle();
    const after = new Date();
    expect(failed.attempts).toBe(4);
    expect(failed.lastError).toMatch(/^unusable plan: missing rationale in step 1/);
    expect(failed.reason).toBe('plan-failed');
    expect(stub!.requestsFor('Doomed')).toHaveLength(4);
    // The good mission was not held up by the bad one.
    expect((await occurrenceRows(db.sql, 'erin'))[0]).toMatchObject({ status: 'planned', attempts: 1 });

    const [row] = await runnerRows(db.sql, 'dave');
    expect(row!.data.iterations).toEqual([
      {
        id: failed.iterationId,
        startedAt: expect.any(String),
        finishedAt: expect.any(String),
        summary: expect.stringMatching(/^The server could not plan this run: unusable plan: missing rationale/),
        overallStatus: 'failed',
        source: 'server',
        plan: [],
      },
    ]);
    expect([nextNineUtc(before), nextNineUtc(after)]).toContain(row!.data.nextRunAt);
    const m = await projectedWith('dave', 'doomed', failed.iterationId);
    expect(Date.parse(m.nextRunAt!)).toBeGreaterThan(Date.now());

    // Each failure was logged with its own reason, then the final one.
    expect(c.warnings('will retry').map((l) => l.reason)).toEqual([
      expect.stringMatching(/no JSON object found/),
      expect.stringMatching(/invalid JSON/),
      expect.stringMatching(/title: missing/),
    ]);
    expect(c.warnings('failed for good')).toHaveLength(1);
    expect(await metricValue(c, 'mana_ai_planner_runs_total', { outcome: 'retry' })).toBe(3);
    expect(await metricValue(c, 'mana_ai_planner_runs_total', { outcome: 'failed' })).toBe(1);
    // No hot loop afterwards.
    await sleep(500);
    expect(stub!.requestsFor('Doomed')).toHaveLength(4);
    expect(await runnerRows(db.sql, 'dave')).toHaveLength(1);
  });

  it('429 then 200: the call is retried after Retry-After and succeeds in the same attempt', async () => {
    const c = await start();
    stub!.script(reply.rateLimited(1));
    await insertPlannableMissions(db.sql, [{ userId: 'frank', missionId: 'm1', nextRunAt: inMs(-1000) }]);

    const occ = await settledOccurrence('frank', 'planned');
    await c.planner!.idle();
    expect(stub!.requests).toHaveLength(2);
    expect(stub!.requests[1]!.at - stub!.requests[0]!.at).toBeGreaterThanOrEqual(950);
    expect(occ.attempts).toBe(1);
    expect(await runnerRows(db.sql)).toHaveLength(1);
    expect(await metricValue(c, 'mana_ai_llm_requests_total', { outcome: 'rate_limited' })).toBe(1);
    expect(await metricValue(c, 'mana_ai_llm_requests_total', { outcome: 'ok' })).toBe(1);
  });

  it('500 then 200: a server error is retried and succeeds', async () => {
    const c = await start();
    stub!.script(reply.serverError());
    await insertPlannableMissions(db.sql, [{ userId: 'gina', missionId: 'm1', nextRunAt: inMs(-1000) }]);
    await settledOccurrence('gina', 'planned');
    await c.planner!.idle();
    expect(stub!.requests).toHaveLength(2);
    expect(await runnerRows(db.sql)).toHaveLength(1);
    expect(await metricValue(c, 'mana_ai_llm_requests_total', { outcome: 'server_error' })).toBe(1);
  });

  it('a timeout (the LLM hangs) is retried: a new planning attempt after the backoff, then planned', async () => {
    // No HTTP retries inside an attempt: the planner's own attempt/backoff handles it.
    const c = await start({ PLANNER_TIMEOUT_MS: '1000', PLANNER_MAX_RETRIES: '0' });
    stub!.script(reply.hang());
    await insertPlannableMissions(db.sql, [{ userId: 'hank', missionId: 'm1', nextRunAt: inMs(-1000) }]);

    const occ = await settledOccurrence('hank', 'planned');
    await c.planner!.idle();
    expect(stub!.requests).toHaveLength(2);
    expect(stub!.requests[1]!.at - stub!.requests[0]!.at).toBeGreaterThanOrEqual(1000);
    expect(occ.attempts).toBe(2);
    expect(c.warnings('will retry')).toEqual([expect.objectContaining({ reason: expect.stringMatching(/timeout/) })]);
    expect(await metricValue(c, 'mana_ai_llm_requests_total', { outcome: 'timeout' })).toBe(1);
    expect(await runnerRows(db.sql)).toHaveLength(1);
  });

  it('a timeout is also retried inside one attempt when PLANNER_MAX_RETRIES allows', async () => {
    const c = await start({ PLANNER_TIMEOUT_MS: '1000', PLANNER_MAX_RETRIES: '2' });
    stub!.script(reply.hang());
    await insertPlannableMissions(db.sql, [{ userId: 'ivy', missionId: 'm1', nextRunAt: inMs(-1000) }]);
    const occ = await settledOccurrence('ivy', 'planned');
    await c.planner!.idle();
    expect(stub!.requests).toHaveLength(2);
    expect(occ.attempts).toBe(1);
  });
});

describe('privacy', () => {
  it('an encrypted mission is never sent to the LLM: the occurrence waits for a device, the reason visible in /internal/occurrences', async () => {
    const c = await start();
    await insertPlannableMissions(db.sql, [
      { userId: 'jane', missionId: 'secret', nextRunAt: inMs(-1000), title: 'Secret mission', objective: 'enc:1:AAECAwQFBgcICQ==' },
      { userId: 'jane', missionId: 'secret-concept', nextRunAt: inMs(-1000), title: 'Concept secret', conceptMarkdown: 'enc:1:ZZZZ' },
      // A plaintext mission in the same pass shows the planner is on and calling the LLM.
      { userId: 'kim', missionId: 'open', nextRunAt: inMs(-1000), title: 'Open mission' },
    ]);
    await settledOccurrence('kim', 'planned');
    const waiting = await waitFor(async () => {
      const rows = await occurrenceRows(db.sql, 'jane');
      return rows.length === 2 && rows.every((o) => o.status === 'waiting') ? rows : undefined;
    }, 10_000, 'both encrypted occurrences waiting');
    await c.planner!.idle();
    await sleep(300);

    expect(stub!.requests).toHaveLength(1);
    expect(stub!.requestsFor('Secret mission')).toHaveLength(0);
    expect(stub!.requestsFor('Concept secret')).toHaveLength(0);
    expect(stub!.requests.some((r) => r.user.includes('enc:1:') || r.system.includes('enc:1:'))).toBe(false);
    expect(await runnerRows(db.sql, 'jane')).toHaveLength(0);
    for (const o of waiting) expect(o).toMatchObject({ lastError: expect.stringMatching(/end-to-end encrypted/), reason: 'encrypted' });

    const res = await fetch(`${c.url}/internal/occurrences?userId=jane`, { headers: { 'x-service-key': SERVICE_KEY } });
    expect(res.status).toBe(200);
    const listed = (await res.json()) as { missionId: string; status: string; lastError: string }[];
    expect(listed.map((o) => [o.missionId, o.status, o.lastError]).sort()).toEqual([
      ['secret', 'waiting', 'mission is end-to-end encrypted (objective): only a device can plan it'],
      ['secret-concept', 'waiting', 'mission is end-to-end encrypted (conceptMarkdown): only a device can plan it'],
    ]);
    expect(await metricValue(c, 'mana_ai_planner_runs_total', { outcome: 'encrypted' })).toBe(2);
  });
});

describe('without MANA_LLM_URL', () => {
  it('planning is off: occurrences with no device wait, one startup warning, never a plan', async () => {
    const c = await startPlanningCoordinator(db.sql, { INSTANCE_ID: 'no-llm' });
    running.push(c);
    expect(c.planner?.enabled).toBe(false);
    await insertPlannableMissions(db.sql, [
      { userId: 'lena', missionId: 'm1', nextRunAt: inMs(-1000) },
      { userId: 'lena', missionId: 'm2', nextRunAt: inMs(-1000) },
    ]);
    const rows = await waitFor(async () => {
      const r = await occurrenceRows(db.sql, 'lena');
      return r.length === 2 && r.every((o) => o.status === 'waiting') ? r : undefined;
    }, 10_000, 'occurrences waiting');
    for (const o of rows) expect(o).toMatchObject({ lastError: WAIT_REASON.detail, reason: 'no-planner' });
    // Several passes later: still one warning, nothing written.
    await sleep(500);
    expect(c.warnings('MANA_LLM_URL is not set')).toHaveLength(1);
    expect(await runnerRows(db.sql)).toHaveLength(0);
    expect((await occurrenceRows(db.sql, 'lena')).map((o) => o.status)).toEqual(['waiting', 'waiting']);
  });
});
