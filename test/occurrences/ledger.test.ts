/**
 * The ledger's batched queries against a real Postgres: what createOccurrences
 * returns is exactly the row as stored, creation is idempotent, and the
 * batched transitions move only rows in the expected status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getOccurrence } from '../../src/schedule/occurrences.js';
import { createOccurrences, markNudged, settleFromSnapshots, takeForServer, takeStaleCreated } from '../../src/schedule/transitions.js';
import { iterationIdFor } from '../../src/schedule/occurrence-id.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { reason } from '../../src/schedule/reasons.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db.drop();
});

const DUE = '2026-03-01T08:00:00.123456Z';
const due = (n: number, mission = 'm') => Array.from({ length: n }, (_, i) => ({ userId: `user-${i}`, missionId: mission, nextRunAt: DUE }));

describe('occurrence ledger', () => {
  it('createOccurrences returns each created row exactly as stored, nudged for live users', async () => {
    const live = new Set(['user-0', 'user-2']);
    const created = await createOccurrences(db.sql, due(4, 'shape'), { startAs: (d) => (live.has(d.userId) ? 'ws' : 'created'), wsDeadlineMs: 20_000 });
    expect(created).toHaveLength(4);
    for (const occ of created) {
      expect(occ).toEqual(await getOccurrence(db.sql, occ.iterationId));
      expect(occ.iterationId).toBe(iterationIdFor(occ.userId, 'shape', DUE));
      expect(occ.status).toBe(live.has(occ.userId) ? 'nudged' : 'created');
    }
    const nudged = created.find((o) => o.status === 'nudged')!;
    expect(Date.parse(nudged.deadlineAt!) - Date.parse(nudged.createdAt)).toBe(20_000);
  });

  it('creates occurrences already routed to the server planner or to waiting, each exactly as stored', async () => {
    const starts = ['server', 'wait', 'ws', 'created'] as const;
    const created = await createOccurrences(db.sql, due(8, 'routed'), {
      startAs: (d) => starts[Number(d.userId.slice(5)) % 4]!,
      wsDeadlineMs: 20_000,
      server: { holder: 'server:x', leaseMs: 90_000, reason: reason('no-device', 'no reachable device') },
      wait: { reason: reason('no-planner', 'waiting for a device'), retryInMs: 60_000 },
    });
    expect(created).toHaveLength(8);
    for (const occ of created) {
      expect(occ).toEqual(await getOccurrence(db.sql, occ.iterationId));
      const start = starts[Number(occ.userId.slice(5)) % 4];
      expect(occ.status).toBe({ server: 'planning', wait: 'waiting', ws: 'nudged', created: 'created' }[start!]);
    }
    const planning = created.find((o) => o.status === 'planning')!;
    expect(planning).toMatchObject({ channel: 'server', claimedBy: 'server:x', lastError: 'no reachable device', reason: 'no-device', deadlineAt: null });
    expect(Date.parse(planning.leaseExpiresAt!) - Date.parse(planning.createdAt)).toBe(90_000);
    const waiting = created.find((o) => o.status === 'waiting')!;
    expect(waiting).toMatchObject({ channel: null, claimedBy: null, lastError: 'waiting for a device', reason: 'no-planner', leaseExpiresAt: null });
    expect(Date.parse(waiting.nextAttemptAt!) - Date.parse(waiting.createdAt)).toBe(60_000);
    await expect(createOccurrences(db.sql, due(1, 'no-opts'), { startAs: () => 'server' })).rejects.toThrow(/needs opts.server/);
  });

  it('creates each occurrence once, however often and however concurrently it is asked', async () => {
    const batch = due(500, 'once');
    const results = await Promise.all([1, 2, 3, 4].map(() => createOccurrences(db.sql, batch)));
    expect(results.reduce((n, r) => n + r.length, 0)).toBe(500);
    expect(await createOccurrences(db.sql, batch)).toEqual([]);
  });

  it('two instances creating overlapping sets in opposite orders do not deadlock', async () => {
    for (let round = 0; round < 5; round++) {
      const batch = due(2000, `dl-${round}`);
      const results = await Promise.all([createOccurrences(db.sql, batch), createOccurrences(db.sql, [...batch].reverse())]);
      expect(results[0]!.length + results[1]!.length).toBe(2000);
    }
  });

  it('markNudged and takeForServer move many rows in one statement, only from the given statuses', async () => {
    const created = await createOccurrences(db.sql, due(6, 'batch'));
    const ids = created.map((o) => o.iterationId);
    const nudged = await markNudged(db.sql, ids.slice(0, 3), 'ws', 1000);
    expect(nudged.map((o) => o.status)).toEqual(['nudged', 'nudged', 'nudged']);
    expect(await markNudged(db.sql, ids.slice(0, 3), 'ws', 1000)).toEqual([]);

    const taken = await takeForServer(db.sql, ids, ['created'], 'server:x', 60_000, reason('no-device', 'no reachable device'));
    expect(taken.map((o) => o.iterationId).sort()).toEqual(ids.slice(3).sort());
    expect(taken.every((o) => o.status === 'planning' && o.claimedBy === 'server:x' && o.lastError === 'no reachable device' && o.reason === 'no-device')).toBe(true);
    expect(await markNudged(db.sql, [], 'ws', 1000)).toEqual([]);
    expect(await takeForServer(db.sql, [], ['created'], 'server:x', 1)).toEqual([]);
  });

  it("takeStaleCreated hands out 'created' rows older than the limit, each to one caller", async () => {
    const created = await createOccurrences(db.sql, due(20, 'stale'));
    expect(await takeStaleCreated(db.sql, 30_000, 100)).toEqual([]);
    await db.sql`UPDATE mana_ai.occurrences SET updated_at = now() - interval '1 minute' WHERE mission_id = 'stale'`;
    const [a, b] = await Promise.all([takeStaleCreated(db.sql, 30_000, 100), takeStaleCreated(db.sql, 30_000, 100)]);
    const got = [...a!, ...b!].map((o) => o.iterationId).sort();
    expect(got).toEqual(created.map((o) => o.iterationId).sort());
    // Re-stamped: not handed out again until it is stale again.
    expect(await takeStaleCreated(db.sql, 30_000, 100)).toEqual([]);
  });
});

describe('settling only the missions a refresh changed', () => {
  it('settleFromSnapshots(missions) looks at those missions\' open occurrences only; without a list, at all', async () => {
    const past = '2026-03-01T09:00:00.000000Z';
    const rows = ['a', 'b', 'c'].map((m) => ({ userId: 'settle-user', missionId: `settle-${m}`, nextRunAt: past }));
    await createOccurrences(db.sql, rows);
    // Every mission paused: each occurrence would be superseded.
    await db.sql`
      INSERT INTO mana_ai.mission_snapshots (user_id, mission_id, fields, versions, present, soft_deleted, state, next_run_at, listed, author, agent_status)
      SELECT 'settle-user', m, '{}', '{}', true, false, 'paused', ${past}::text::timestamptz, true, 'settle-user', 'active' FROM unnest(${rows.map((r) => r.missionId)}::text[]) AS m`;
    expect(await settleFromSnapshots(db.sql, [])).toEqual([]);
    const one = await settleFromSnapshots(db.sql, [{ userId: 'settle-user', missionId: 'settle-b' }, { userId: 'someone-else', missionId: 'settle-a' }]);
    expect(one.map((o) => o.iterationId)).toEqual([iterationIdFor('settle-user', 'settle-b', past)]);
    const rest = await settleFromSnapshots(db.sql);
    expect(rest.map((o) => o.iterationId).sort()).toEqual([iterationIdFor('settle-user', 'settle-a', past), iterationIdFor('settle-user', 'settle-c', past)].sort());
    expect(rest.every((o) => o.status === 'superseded')).toBe(true);
  });
});
