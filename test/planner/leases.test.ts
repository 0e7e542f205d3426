/**
 * A renewal that lands late never stretches a lease the run shortened
 * itself. The renewal is held up the way a loaded pool holds it: here by a
 * row lock another transaction keeps, so its order against the run's own
 * statement is forced, not left to timing.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pino } from 'pino';
import { createTestDb, type TestDb } from '../support/db.js';
import { createLeaseKeeper } from '../../src/planner/leases.js';
import { retryLater } from '../../src/planner/attempts.js';
import { sleep } from '../support/wait.js';

let db: TestDb;
const HOLDER = 'server:keeper-test';
const LEASE_MS = 600_000;

beforeAll(async () => {
  db = await createTestDb({ poolMax: 4 });
});

afterAll(async () => {
  await db?.drop();
});

async function planningOccurrence(): Promise<string> {
  const [row] = await db.sql<{ id: string }[]>`
    INSERT INTO mana_ai.occurrences (iteration_id, user_id, mission_id, due_at, status, channel, claimed_by, lease_expires_at, attempts)
    VALUES (gen_random_uuid(), 'kim', gen_random_uuid()::text, now(), 'planning', 'server', ${HOLDER}, now() + interval '5 seconds', 1)
    RETURNING iteration_id::text AS id`;
  return row!.id;
}

async function leaseLeftMs(id: string): Promise<number> {
  const [row] = await db.sql<{ ms: number }[]>`
    SELECT extract(epoch FROM lease_expires_at - now()) * 1000 AS ms FROM mana_ai.occurrences WHERE iteration_id = ${id}`;
  return Number(row!.ms);
}

it('a retry lease written after letGo stays short although a renewal issued before it lands after', async () => {
  const id = await planningOccurrence();
  const lost: string[] = [];
  const keeper = createLeaseKeeper({ sql: db.sql, log: pino({ level: 'silent' }), holder: HOLDER, leaseMs: LEASE_MS, held: () => [id], onLost: (x) => lost.push(x) });
  try {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const blocker = db.sql.begin(async (tx) => {
      await tx`SELECT 1 FROM mana_ai.occurrences WHERE iteration_id = ${id} FOR UPDATE`;
      locked();
      await released;
    });
    await isLocked;
    keeper.extendSoon(id); // the full lease, issued now, stuck behind the lock
    await sleep(100);

    let letGoDone = false;
    const letGo = keeper.letGo(id).then(() => (letGoDone = true));
    await sleep(200);
    // It waits for the renewal under way: writing the retry lease now would let the renewal land after it.
    expect(letGoDone).toBe(false);

    release();
    await blocker;
    await letGo;
    expect(await leaseLeftMs(id)).toBeGreaterThan(LEASE_MS - 60_000);
    await retryLater(db.sql, id, HOLDER, 1000, 'unusable plan');
    await sleep(100);
    const left = await leaseLeftMs(id);
    expect(left).toBeLessThanOrEqual(1000);
    expect(left).toBeGreaterThan(0);
    expect(lost).toEqual([]);
  } finally {
    keeper.stop();
  }
});

it('a let-go lease is not renewed by the periodic renewal; taken again, it is', async () => {
  const id = await planningOccurrence();
  // A renewal every 500 ms, to 1.5 s.
  const keeper = createLeaseKeeper({ sql: db.sql, log: pino({ level: 'silent' }), holder: HOLDER, leaseMs: 1500, held: () => [id], onLost: () => {} });
  try {
    await keeper.letGo(id);
    await retryLater(db.sql, id, HOLDER, 300, 'unusable plan');
    await sleep(1200);
    // Two renewal turns passed: the retry lease ran out instead of being renewed.
    expect(await leaseLeftMs(id)).toBeLessThan(0);

    // The sweep takes it back while the run still finishes: this planner holds it again.
    keeper.extendSoon(id);
    await sleep(200);
    expect(await leaseLeftMs(id)).toBeGreaterThan(1000);
  } finally {
    keeper.stop();
  }
});
