/**
 * Claim batches under trouble, against a real Postgres: a batch's answers
 * come from its one statement, so a lookup that would fail for one claim
 * cannot fail a granted one; two spellings of one iteration id are one key;
 * and two instances batching the same occurrences in opposite orders lock
 * them in one order, so they never deadlock.
 *
 * The faults are the database's own: a trigger that holds a statement open
 * (pg_sleep), an exclusive lock queued behind it, a statement timeout.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import postgres from 'postgres';
import { createClaimService, type ClaimOutcome } from '../../src/schedule/claims.js';
import { createOccurrences } from '../../src/schedule/transitions.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { waitFor } from '../support/wait.js';

let db: TestDb;
const pools: Sql[] = [];

beforeAll(async () => {
  db = await createTestDb();
  await db.sql.unsafe(`
    CREATE FUNCTION test_sleep_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(TG_ARGV[0]::float8); RETURN CASE WHEN TG_LEVEL = 'ROW' THEN NEW ELSE NULL END; END $$`);
});

afterEach(async () => {
  await db.sql.unsafe(`DROP TRIGGER IF EXISTS slow_statement ON mana_ai.occurrences; DROP TRIGGER IF EXISTS slow_rows ON mana_ai.occurrences`);
  await Promise.all(pools.splice(0).map((p) => p.end({ timeout: 5 })));
});

afterAll(async () => {
  await db.drop();
});

let seq = 0;
/** Occurrences nudged over the socket (claimable): one per user, or all of one user. */
async function nudged(n: number, oneUser = false) {
  const tag = `${Date.now()}-${seq++}`;
  const due = Array.from({ length: n }, (_, i) => ({ userId: oneUser ? `u-${tag}` : `u-${tag}-${i}`, missionId: `m-${i}`, nextRunAt: '2026-03-01T08:00:00.000000Z' }));
  return createOccurrences(db.sql, due, { startAs: () => 'ws', wsDeadlineMs: 600_000 });
}

async function claimedBy(iterationId: string): Promise<string | null> {
  const [row] = await db.sql<{ by: string | null }[]>`SELECT claimed_by AS by FROM mana_ai.occurrences WHERE iteration_id = ${iterationId}`;
  return row!.by;
}

it('a lookup that would fail for a losing claim never fails the granted claim of the same batch', async () => {
  const [x, y] = await nudged(2);
  // y is the server's: a claim on it loses and must be explained.
  await db.sql`UPDATE mana_ai.occurrences SET status = 'planning', channel = 'server', claimed_by = 'server:other',
                 lease_expires_at = now() + interval '1 hour', deadline_at = NULL WHERE iteration_id = ${y!.iterationId}`;
  // The claims' own pool gives up on a statement after 1 s.
  const claimsSql = postgres(db.url, { max: 4, onnotice: () => {}, connection: { statement_timeout: 1000 } });
  pools.push(claimsSql);
  const claims = createClaimService({ sql: claimsSql, leaseMs: 60_000 });
  await db.sql.unsafe(`CREATE TRIGGER slow_statement AFTER UPDATE ON mana_ai.occurrences FOR EACH STATEMENT EXECUTE FUNCTION test_sleep_trigger('0.4')`);

  const both = Promise.allSettled([
    claims.claim({ iterationId: x!.iterationId, userId: x!.userId, deviceId: 'laptop' }),
    claims.claim({ iterationId: y!.iterationId, userId: y!.userId, deviceId: 'phone' }),
  ]);
  // While the batch's statement sleeps in the trigger, an exclusive lock queues behind it
  // (a migration, an operator's ALTER): every later statement on the table waits behind that.
  await waitFor(async () => {
    const [row] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database() AND query LIKE '%mana_ai.occurrences%' AND pid <> pg_backend_pid()`;
    return row!.n > 0;
  }, 5000, 'the batch statement to be running', 5);
  const blocker = db.sql.begin(async (tx) => {
    await tx`LOCK TABLE mana_ai.occurrences IN ACCESS EXCLUSIVE MODE`;
    await tx`SELECT pg_sleep(2)`;
  });
  const [a, b] = await both;
  await blocker;

  expect(a).toEqual({ status: 'fulfilled', value: expect.objectContaining({ kind: 'granted', leaseExpiresAt: expect.any(String) }) });
  expect(b).toEqual({ status: 'fulfilled', value: { kind: 'held', by: 'server' } });
  expect(await claimedBy(x!.iterationId)).toBe('laptop');
});

it('two spellings of one iteration id claimed in one tick are one claim: one device granted, and it is the one the row names', async () => {
  const occs = await nudged(20);
  const claims = createClaimService({ sql: db.sql, leaseMs: 60_000 });
  const outcomes = await Promise.all(
    occs.flatMap((o) => [
      claims.claim({ iterationId: o.iterationId.toUpperCase(), userId: o.userId, deviceId: 'upper' }).then((out) => ({ o, device: 'upper', out })),
      claims.claim({ iterationId: o.iterationId, userId: o.userId, deviceId: 'lower' }).then((out) => ({ o, device: 'lower', out })),
    ]),
  );
  for (const o of occs) {
    const mine = outcomes.filter((x) => x.o === o);
    const won = mine.filter((x) => x.out.kind === 'granted');
    expect(won, o.iterationId).toHaveLength(1);
    // Answered in arrival order: the first spelling's device holds it.
    expect(won[0]!.device).toBe('upper');
    expect(await claimedBy(o.iterationId)).toBe('upper');
    expect(mine.find((x) => x.device === 'lower')!.out).toEqual({ kind: 'held', by: 'device' });
  }
  // The holder completes and releases with either spelling.
  const [first, second] = occs;
  expect((await claims.complete({ iterationId: first!.iterationId.toUpperCase(), userId: first!.userId, deviceId: 'upper' })).kind).toBe('granted');
  expect((await claims.release({ iterationId: second!.iterationId.toUpperCase(), userId: second!.userId, deviceId: 'upper' })).kind).toBe('granted');
});

it('two instances batching [X, Y] and [Y, X] at once lock in one order: no deadlock, each occurrence granted once', async () => {
  const rounds = 3;
  const a = createSql(db.url, { max: 2 });
  const b = createSql(db.url, { max: 2 });
  pools.push(a, b);
  // A ledger of realistic size (a burst: thousands open), so the planner looks rows up by index in the batch's order (on a
  // handful of rows it scans the table in its physical order, the same for both instances).
  await db.sql`INSERT INTO mana_ai.occurrences (iteration_id, user_id, mission_id, due_at, status)
               SELECT gen_random_uuid(), 'filler-' || g, 'm', now(), 'nudged' FROM generate_series(1, 20000) g`;
  await db.sql`ANALYZE mana_ai.occurrences`;
  const first = createClaimService({ sql: a, leaseMs: 60_000 });
  const second = createClaimService({ sql: b, leaseMs: 60_000 });
  // Each row's update takes 150 ms: two statements locking in opposite orders would each hold one row and wait for the other.
  await db.sql.unsafe(`CREATE TRIGGER slow_rows BEFORE UPDATE ON mana_ai.occurrences FOR EACH ROW EXECUTE FUNCTION test_sleep_trigger('0.15')`);
  for (let r = 0; r < rounds; r++) {
    // One user's two missions due together.
    const [x, y] = await nudged(2, true);
    const claim = (svc: typeof first, iterationId: string, deviceId: string) => svc.claim({ iterationId, userId: x!.userId, deviceId });
    const results = await Promise.allSettled([
      claim(first, x!.iterationId, 'laptop'),
      claim(first, y!.iterationId, 'laptop'),
      claim(second, y!.iterationId, 'phone'),
      claim(second, x!.iterationId, 'phone'),
    ]);
    const rejected = results.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => (s.reason as { code?: string }).code ?? String(s.reason));
    expect(rejected).toEqual([]);
    const outs = results.map((s) => (s as PromiseFulfilledResult<ClaimOutcome>).value);
    // x: laptop's or phone's, never both; the same for y.
    expect([outs[0]!.kind, outs[3]!.kind].sort()).toEqual(['granted', 'held']);
    expect([outs[1]!.kind, outs[2]!.kind].sort()).toEqual(['granted', 'held']);
    expect(await claimedBy(x!.iterationId)).toBe(outs[0]!.kind === 'granted' ? 'laptop' : 'phone');
    expect(await claimedBy(y!.iterationId)).toBe(outs[1]!.kind === 'granted' ? 'laptop' : 'phone');
  }
}, 60_000);
