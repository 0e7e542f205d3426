/**
 * An agent's budgets in the database, statement by statement, against a
 * real Postgres: a slot counts only while its plan holds a live lease (a
 * crashed instance's slots stop counting when its leases run out, and a
 * takeover takes the slot over), takes racing from several instances never
 * pass the bound, a plan's end wakes the oldest waiters, and tokens count
 * over a rolling 24 h.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOccurrences, takeExpired } from '../../src/schedule/transitions.js';
import { getOccurrence } from '../../src/schedule/occurrences.js';
import { reason } from '../../src/schedule/reasons.js';
import { recordAgentTokens, releaseAgentSlot, takeAgentSlot, type CountedAgent } from '../../src/planner/agent-budget.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { waitFor } from '../support/wait.js';

let db: TestDb;
let seq = 0;

beforeAll(async () => {
  db = await createTestDb({ poolMax: 12 });
});

afterAll(async () => {
  await db.drop();
});

/** Occurrences of `userId` held by the server planner `holder`, as the due scan creates them. */
async function planning(userId: string, n: number, holder: string, leaseMs = 60_000): Promise<string[]> {
  const due = Array.from({ length: n }, () => ({ userId, missionId: `m${seq++}`, nextRunAt: '2026-03-01T08:00:00.000000Z' }));
  const created = await createOccurrences(db.sql, due, { startAs: () => 'server', server: { holder, leaseMs, reason: reason('no-device') } });
  return created.map((o) => o.iterationId);
}

/** How many statements of this test's database matching `like` wait for a lock now (other files' databases share the server). */
async function waiting(like: string): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() AND query LIKE ${like}`;
  return row!.n;
}

const agent = (userId: string, max: number | null, maxTokens: number | null = null): CountedAgent => ({ userId, agentId: 'a-1', maxConcurrentMissions: max, maxTokensPerDay: maxTokens });

describe('concurrency slots', () => {
  it('a second plan waits at the bound; the first one ending wakes it', async () => {
    const a = agent('u-slots', 1);
    const [first, second] = await planning('u-slots', 2, 'server:i1');
    expect(await takeAgentSlot(db.sql, { iterationId: first!, attempts: 0 }, a, { holder: 'server:i1' })).toEqual({ kind: 'ok' });
    const held = await takeAgentSlot(db.sql, { iterationId: second!, attempts: 0 }, a, { holder: 'server:i1' });
    expect(held).toMatchObject({ kind: 'held', bound: 'concurrency', reason: { code: 'agent-concurrency' } });
    const waiting = await getOccurrence(db.sql, second!);
    expect(waiting).toMatchObject({ status: 'waiting', reason: 'agent-concurrency', claimedBy: null });
    expect(Date.parse(waiting!.nextAttemptAt!) - Date.now()).toBeGreaterThan(50_000);

    expect(await releaseAgentSlot(db.sql, first!, a, 'server:i1')).toBe(1);
    const woken = await getOccurrence(db.sql, second!);
    expect(Date.parse(woken!.nextAttemptAt!)).toBeLessThanOrEqual(Date.now());
    // Nothing left to wake.
    expect(await releaseAgentSlot(db.sql, first!, a, 'server:i1')).toBe(0);
  });

  it('a plan ending while a take that counted it is still leaving its waiter wakes that waiter', async () => {
    const a = agent('u-wake-race', 1);
    const [first, second] = await planning('u-wake-race', 2, 'server:i1');
    expect(await takeAgentSlot(db.sql, { iterationId: first!, attempts: 0 }, a, { holder: 'server:i1' })).toEqual({ kind: 'ok' });
    // Holds the second take after it counted the first plan as running, before its waiter row lands.
    const blocker = await db.sql.reserve();
    try {
      await blocker`BEGIN`;
      await blocker`INSERT INTO mana_ai.agent_slots (iteration_id, user_id, agent_id, holder) VALUES (${second!}, 'u-wake-race', 'a-1', NULL)`;
      const take = takeAgentSlot(db.sql, { iterationId: second!, attempts: 0 }, a, { holder: 'server:i1' });
      await waitFor(async () => (await waiting('%INSERT INTO mana_ai.agent_slots%')) > 0, 10_000, 'the take to block on its waiter row');
      // The first plan ends now: its wake either runs at once or waits for the take's lock.
      let released = false;
      const release = releaseAgentSlot(db.sql, first!, a, 'server:i1').finally(() => (released = true));
      await waitFor(async () => released || (await waiting('%pg_advisory_xact_lock%')) > 0, 10_000, 'the wake to end or block on the lock');
      await blocker`ROLLBACK`;
      expect(await take).toMatchObject({ kind: 'held', bound: 'concurrency' });
      expect(await release).toBe(1);
    } finally {
      blocker.release();
    }
    const woken = await getOccurrence(db.sql, second!);
    expect(Date.parse(woken!.nextAttemptAt!)).toBeLessThanOrEqual(Date.now());
  });

  it("a crashed instance's slot stops counting when its lease runs out, and a takeover takes it over", async () => {
    const a = agent('u-crash', 1);
    const [dead] = await planning('u-crash', 1, 'server:dead');
    const [other] = await planning('u-crash', 1, 'server:alive');
    expect(await takeAgentSlot(db.sql, { iterationId: dead!, attempts: 0 }, a, { holder: 'server:dead' })).toEqual({ kind: 'ok' });
    // The instance dies: nobody renews its lease.
    await db.sql`UPDATE mana_ai.occurrences SET lease_expires_at = now() - interval '1 second' WHERE iteration_id = ${dead!}`;
    expect(await takeAgentSlot(db.sql, { iterationId: other!, attempts: 0 }, a, { holder: 'server:alive' })).toEqual({ kind: 'ok' });
    await releaseAgentSlot(db.sql, other!, a, 'server:alive');

    // Another instance takes the dead one's occurrence over and plans it: the slot is now its own and counts.
    const taken = await takeExpired(db.sql, 'server:heir', 60_000, 100);
    expect(taken.map((o) => o.iterationId)).toContain(dead!);
    expect(await takeAgentSlot(db.sql, { iterationId: dead!, attempts: 0 }, a, { holder: 'server:heir' })).toEqual({ kind: 'ok' });
    const [slot] = await db.sql<{ holder: string }[]>`SELECT holder FROM mana_ai.agent_slots WHERE iteration_id = ${dead!}`;
    expect(slot!.holder).toBe('server:heir');
    const [late] = await planning('u-crash', 1, 'server:alive');
    expect(await takeAgentSlot(db.sql, { iterationId: late!, attempts: 0 }, a, { holder: 'server:alive' })).toMatchObject({ kind: 'held', bound: 'concurrency' });
  });

  it('takes racing from several instances never pass the bound', async () => {
    for (let round = 0; round < 5; round++) {
      const user = `u-race-${round}`;
      const holders = ['server:a', 'server:b', 'server:c'];
      const ids = (await Promise.all(holders.map((h) => planning(user, 4, h)))).flatMap((list, i) => list.map((id) => ({ id, holder: holders[i]! })));
      const results = await Promise.all(ids.map(({ id, holder }) => takeAgentSlot(db.sql, { iterationId: id, attempts: 0 }, agent(user, 3), { holder })));
      expect(results.filter((r) => r.kind === 'ok')).toHaveLength(3);
      expect(results.filter((r) => r.kind === 'held')).toHaveLength(9);
    }
  });

  it('an occurrence that is no longer ours takes no slot', async () => {
    const [id] = await planning('u-lost', 1, 'server:i1');
    expect(await takeAgentSlot(db.sql, { iterationId: id!, attempts: 0 }, agent('u-lost', 1), { holder: 'server:someone-else' })).toEqual({ kind: 'lost' });
    const [n] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.agent_slots WHERE user_id = 'u-lost'`;
    expect(n!.n).toBe(0);
  });

  it('no bound (null): every plan runs', async () => {
    const ids = await planning('u-free', 5, 'server:i1');
    const results = await Promise.all(ids.map((id) => takeAgentSlot(db.sql, { iterationId: id, attempts: 0 }, agent('u-free', null), { holder: 'server:i1' })));
    expect(results.every((r) => r.kind === 'ok')).toBe(true);
  });
});

describe('tokens', () => {
  it('count over a rolling 24 h: at the bound the plan waits until the oldest spend leaves the window', async () => {
    const a = agent('u-tokens', null, 1000);
    const [spent, next] = await planning('u-tokens', 2, 'server:i1');
    await recordAgentTokens(db.sql, spent!, a, 600);
    await recordAgentTokens(db.sql, spent!, a, 400);
    // The older spend is 23 h old: the budget frees in about an hour, but the device backoff (1 min) comes first.
    await db.sql`UPDATE mana_ai.agent_tokens SET spent_at = now() - interval '23 hours' WHERE tokens = 600 AND user_id = 'u-tokens'`;
    expect(await takeAgentSlot(db.sql, { iterationId: next!, attempts: 0 }, a, { holder: 'server:i1' })).toMatchObject({ kind: 'held', bound: 'tokens', reason: { code: 'agent-tokens' } });
    const waiting = await getOccurrence(db.sql, next!);
    expect(waiting).toMatchObject({ status: 'waiting', reason: 'agent-tokens' });
    expect(Math.abs(Date.parse(waiting!.nextAttemptAt!) - Date.now() - 60_000)).toBeLessThan(5000);

    // The oldest spend 24 h old leaves the window (and the table).
    await db.sql`UPDATE mana_ai.agent_tokens SET spent_at = now() - interval '24 hours 1 second' WHERE tokens = 600 AND user_id = 'u-tokens'`;
    const [again] = await planning('u-tokens', 1, 'server:i1');
    expect(await takeAgentSlot(db.sql, { iterationId: again!, attempts: 0 }, a, { holder: 'server:i1' })).toEqual({ kind: 'ok' });
    const rows = await db.sql<{ tokens: number }[]>`SELECT tokens FROM mana_ai.agent_tokens WHERE user_id = 'u-tokens'`;
    expect(rows.map((r) => r.tokens)).toEqual([400]);
  });

  it('a waiting plan retries when the window frees, if that comes before its backoff', async () => {
    const a = agent('u-frees', null, 100);
    const [spent, next] = await planning('u-frees', 2, 'server:i1');
    await recordAgentTokens(db.sql, spent!, a, 100);
    await db.sql`UPDATE mana_ai.agent_tokens SET spent_at = now() - interval '86390 seconds' WHERE user_id = 'u-frees'`;
    await takeAgentSlot(db.sql, { iterationId: next!, attempts: 3 }, a, { holder: 'server:i1' });
    const waiting = await getOccurrence(db.sql, next!);
    const inMs = Date.parse(waiting!.nextAttemptAt!) - Date.now();
    expect(inMs).toBeGreaterThan(3000);
    expect(inMs).toBeLessThan(12_000);
  });
});
