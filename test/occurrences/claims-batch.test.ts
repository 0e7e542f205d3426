/**
 * Claims from many devices at once go through one statement per batch and
 * keep the ledger's rule: the first claim on an occurrence wins, every other
 * device is told who holds it, the same device re-claiming renews, and a
 * malformed id fails no one else's claim.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createClaimService } from '../../src/schedule/claims.js';
import { createOccurrences } from '../../src/schedule/transitions.js';
import { createTestDb, type TestDb } from '../support/db.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db.drop();
});

it('300 simultaneous claims on 100 occurrences from 3 devices: one winner each, the others held', async () => {
  const due = Array.from({ length: 100 }, (_, i) => ({ userId: `user-${i}`, missionId: 'm', nextRunAt: '2026-03-01T08:00:00.000000Z' }));
  const occs = await createOccurrences(db.sql, due, { startAs: () => 'ws', wsDeadlineMs: 60_000 });
  const claims = createClaimService({ sql: db.sql, leaseMs: 60_000 });
  const devices = ['laptop', 'phone', 'tablet'];
  const attempts = occs.flatMap((o) => devices.map((deviceId) => ({ iterationId: o.iterationId, userId: o.userId, deviceId })));
  const outcomes = await Promise.all([
    ...attempts.map((a) => claims.claim(a).then((out) => ({ a, out }))),
    claims.claim({ iterationId: 'not-a-uuid', userId: 'user-0', deviceId: 'laptop' }).then((out) => ({ a: null, out })),
  ]);
  expect(outcomes.at(-1)!.out).toEqual({ kind: 'not-found' });
  for (const o of occs) {
    const mine = outcomes.filter((x) => x.a?.iterationId === o.iterationId);
    const won = mine.filter((x) => x.out.kind === 'granted');
    expect(won).toHaveLength(1);
    // Claims are answered in arrival order: the first device's claim wins.
    expect(won[0]!.a!.deviceId).toBe('laptop');
    const granted = won[0]!.out;
    if (granted.kind !== 'granted') throw new Error('unreachable');
    expect(granted.occurrence).toMatchObject({ status: 'claimed', claimedBy: 'laptop', channel: 'ws', deadlineAt: null });
    expect(Date.parse(granted.leaseExpiresAt)).toBeGreaterThan(Date.now());
    for (const x of mine.filter((y) => y !== won[0])) expect(x.out).toEqual({ kind: 'held', by: 'device' });
  }
  // The holder renews; another user's claim is forbidden.
  const first = occs[0]!;
  expect((await claims.claim({ iterationId: first.iterationId, userId: first.userId, deviceId: 'laptop' })).kind).toBe('granted');
  expect(await claims.claim({ iterationId: first.iterationId, userId: 'user-1', deviceId: 'laptop' })).toEqual({ kind: 'forbidden' });
});
