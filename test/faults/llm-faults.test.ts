/**
 * Downstream faults on the mana-llm side, end to end: one coordinator with
 * server planning against a stub mana-llm that misbehaves per mission — it
 * hangs, answers 500, 429 with Retry-After, a non-JSON body, prose, broken
 * JSON, a step without its required parameter — before it answers well, and for one mission it
 * never does. Users have no device, so the server plans everything.
 *
 * What must hold: each occurrence ends in exactly one iteration (a plan, or
 * for the hopeless mission one visible 'failed' iteration), written by one
 * sync_changes row and listed once by the projection; the number of LLM
 * calls is what the retry policy says; each failure class is counted in
 * /metrics by outcome.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub, type StubReply } from '../support/llm-stub.js';
import { inMs, waitFor } from '../support/coordinator.js';
import { insertPlannable, ledger, planCount, startCaptured, type CapturedCoordinator } from './support.js';

/** Per mission: the replies of its first calls, in order; afterwards a valid plan (or `forever`). */
const SCRIPTS: Record<string, { first: StubReply[]; forever?: StubReply }> = {
  hang: { first: [reply.hang(), reply.hang()] },
  e500: { first: [reply.serverError(), reply.serverError()] },
  e429: { first: [reply.rateLimited(1)] },
  badbody: { first: [{ kind: 'status', status: 200, body: '<html>upstream proxy error</html>' }] },
  garbage: { first: [reply.prose(), reply.invalidJson(), reply.missingParam()] },
  hopeless: { first: [], forever: reply.serverError() },
};

let db: TestDb;
let llm: LlmStub;
let c: CapturedCoordinator;

beforeAll(async () => {
  db = await createTestDb({ poolMax: 8 });
  const calls = new Map<string, number>();
  llm = await startLlmStub((req) => {
    const name = Object.keys(SCRIPTS).find((k) => req.user.includes(`FAULT-${k}-MISSION`));
    if (!name) return reply.plan();
    const n = calls.get(name) ?? 0;
    calls.set(name, n + 1);
    const script = SCRIPTS[name]!;
    return script.first[n] ?? script.forever ?? reply.plan();
  });
  c = await startCaptured(db.sql, {
    INSTANCE_ID: 'llm-faults',
    MANA_LLM_URL: llm.url,
    PLANNER_TIMEOUT_MS: '1000',
    PLANNER_MAX_RETRIES: '1',
    PLANNER_MAX_ATTEMPTS: '4',
    PLANNER_RETRY_BACKOFF_MS: '100',
    PLANNER_CONCURRENCY: '8',
  });
});

afterAll(async () => {
  await c?.stop();
  await llm?.close();
  await db?.drop();
});

describe('mana-llm faults', () => {
  it('every fault ends in exactly one iteration per occurrence, with the calls the retry policy allows', async () => {
    const names = Object.keys(SCRIPTS);
    await insertPlannable(
      db.sql,
      names.map((n) => ({ userId: `u-${n}`, missionId: 'm', nextRunAt: inMs(-1000), title: `FAULT-${n}-MISSION` })),
    );

    const settled = Object.fromEntries(
      await Promise.all(
        names.map(async (n) => {
          const occ = await waitFor(
            async () => (await ledger(db.sql, `u-${n}`)).find((o) => o.status === 'planned' || o.status === 'failed'),
            25_000,
            `the occurrence of ${n} to settle`,
          );
          return [n, occ] as const;
        }),
      ),
    );
    await c.planner!.idle();
    for (const n of names) {
      await waitFor(async () => (await planCount(db.sql, `u-${n}`, 'm', settled[n]!.iterationId)).projected > 0, 5000, `${n} projected`);
    }

    for (const n of names) {
      const occ = settled[n]!;
      expect(occ.status, n).toBe(n === 'hopeless' ? 'failed' : 'planned');
      expect(await ledger(db.sql, `u-${n}`), n).toHaveLength(1);
      expect(await planCount(db.sql, `u-${n}`, 'm', occ.iterationId), n).toEqual({ rows: 1, projected: 1 });
    }
    // Planner attempts: a hang or a 500 pair uses one attempt (1 call + 1 retry), a 429 is retried
    // inside its attempt, each unusable reply costs one attempt; the hopeless mission uses all 4.
    expect(Object.fromEntries(names.map((n) => [n, settled[n]!.attempts]))).toEqual({
      hang: 2,
      e500: 2,
      e429: 1,
      badbody: 2,
      garbage: 4,
      hopeless: 4,
    });
    const calls = Object.fromEntries(names.map((n) => [n, llm.requestsFor(`FAULT-${n}-MISSION`).length]));
    expect(calls).toEqual({ hang: 3, e500: 3, e429: 2, badbody: 2, garbage: 4, hopeless: 8 });

    // The hopeless mission's iteration says why, for the user to see.
    const [row] = await db.sql<{ it: { overallStatus: string; summary: string } }[]>`
      SELECT it FROM mana_ai.mission_snapshots s, jsonb_array_elements(s.fields -> 'iterations') it
      WHERE s.user_id = 'u-hopeless' AND it ->> 'id' = ${settled['hopeless']!.iterationId}`;
    expect(row!.it.overallStatus).toBe('failed');
    expect(row!.it.summary).toMatch(/HTTP 500/);

    // Nothing more happens on later passes: no further calls, rows or occurrences.
    const before = llm.requests.length;
    await new Promise((r) => setTimeout(r, 600));
    expect(llm.requests.length).toBe(before);

    const m = await c.scrape();
    const llmReq = (outcome: string) => m.value('mana_ai_llm_requests_total', { outcome });
    expect(llmReq('timeout')).toBe(2);
    expect(llmReq('server_error')).toBe(2 + 8);
    expect(llmReq('rate_limited')).toBe(1);
    expect(llmReq('bad_reply')).toBe(1);
    expect(llmReq('ok')).toBe(1 + 1 + 1 + 1 + 4);
    expect(m.value('mana_ai_planner_runs_total', { outcome: 'planned' })).toBe(5);
    expect(m.value('mana_ai_planner_runs_total', { outcome: 'failed' })).toBe(1);
    expect(m.value('mana_ai_planner_runs_total', { outcome: 'retry' })).toBe(1 + 1 + 0 + 1 + 3 + 3);
  });
});
