/**
 * The LISTEN/NOTIFY bus between instances, on a real Postgres: many nudges
 * are split into payloads under Postgres' 8,000-byte limit (in bytes, so
 * multibyte user ids count as what they weigh), sent in one statement, and
 * every one reaches the other instance exactly once; an instance ignores its
 * own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createNudgeBus, type MissionChange, type Nudge, type NudgeBus } from '../../src/nudge/nudge-bus.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { waitFor } from '../support/coordinator.js';

let db: TestDb;
let sqlB: Sql;
const buses: NudgeBus[] = [];
const log = pino({ level: 'silent' });

beforeAll(async () => {
  db = await createTestDb({ migrate: false });
  sqlB = createSql(db.url, { max: 2 });
});

afterAll(async () => {
  await Promise.all(buses.map((b) => b.stop()));
  await sqlB.end({ timeout: 5 });
  await db.drop();
});

function nudge(userId: string, i: number): Nudge {
  return {
    userId,
    frame: { type: 'mission-due', missionId: `mission-${i}`, iterationId: crypto.randomUUID(), dueAt: new Date(1_800_000_000_000 + i).toISOString() },
  };
}

describe('nudge bus', () => {
  it('carries thousands of nudges, multibyte user ids included, to the other instance exactly once', async () => {
    const gotA: Nudge[] = [];
    const gotB: Nudge[] = [];
    const a = createNudgeBus({ sql: db.sql, instanceId: 'a', log, onNudge: (n) => gotA.push(n) });
    const b = createNudgeBus({ sql: sqlB, instanceId: 'b', log, onNudge: (n) => gotB.push(n) });
    buses.push(a, b);
    await a.start();
    await b.start();

    // 3 bytes per character in UTF-8: a payload cut by string length would be far over 8,000 bytes.
    const sent = [
      ...Array.from({ length: 2000 }, (_, i) => nudge(`user-${i}`, i)),
      ...Array.from({ length: 200 }, (_, i) => nudge(`用户${'名'.repeat(40)}${i}`, 2000 + i)),
    ];
    await a.publish(sent);
    await waitFor(() => gotB.length >= sent.length, 5000, 'every nudge at B');
    await new Promise((r) => setTimeout(r, 200));
    expect(gotB).toHaveLength(sent.length);
    expect(new Set(gotB.map((n) => n.frame.iterationId)).size).toBe(sent.length);
    expect(gotB).toEqual(expect.arrayContaining(sent));
    // A delivered its own locally already; it must not see them again.
    expect(gotA).toHaveLength(0);
  });

  it('carries mission-changed news the same way, with and without an iteration id, beside nudges', async () => {
    const nudgesAtB: Nudge[] = [];
    const changedAtB: MissionChange[] = [];
    const changedAtA: MissionChange[] = [];
    const a = createNudgeBus({ sql: db.sql, instanceId: 'ca', log, onNudge: () => undefined, onMissionChanged: (c) => changedAtA.push(c) });
    const b = createNudgeBus({ sql: sqlB, instanceId: 'cb', log, onNudge: (n) => nudgesAtB.push(n), onMissionChanged: (c) => changedAtB.push(c) });
    buses.push(a, b);
    await a.start();
    await b.start();

    const changes: MissionChange[] = Array.from({ length: 600 }, (_, i) => ({
      userId: `user-${i % 7}`,
      frame: i % 3 === 0 ? { type: 'mission-changed', missionId: `m-${i}` } : { type: 'mission-changed', missionId: `m-${i}`, iterationId: crypto.randomUUID() },
    }));
    await a.publishChanges(changes);
    await a.publish([nudge('user-1', 1)]);
    await waitFor(() => changedAtB.length >= changes.length && nudgesAtB.length === 1, 5000, 'every change at B');
    await new Promise((r) => setTimeout(r, 200));
    expect(changedAtB).toEqual(changes);
    expect(nudgesAtB).toHaveLength(1);
    expect(changedAtA).toHaveLength(0);
  });

  it("carries a nudge's attempt (the offer count), and a nudge without one as it came", async () => {
    const got: Nudge[] = [];
    const a = createNudgeBus({ sql: db.sql, instanceId: 'attempt-a', log, onNudge: () => undefined });
    const b = createNudgeBus({ sql: sqlB, instanceId: 'attempt-b', log, onNudge: (n) => got.push(n) });
    buses.push(a, b);
    await a.start();
    await b.start();
    const offered = { ...nudge('offered', 1), frame: { ...nudge('offered', 1).frame, attempt: 3 } };
    const plain = nudge('plain', 2);
    await a.publish([offered, plain]);
    await waitFor(() => got.length >= 2, 5000, 'both nudges at B');
    expect(got).toEqual([offered, plain]);
  });
});
