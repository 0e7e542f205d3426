/**
 * What a pass with nothing to do waits for. On a busy database every pass
 * runs: another app's commit makes the snapshot probe say "maybe", so the
 * refresh reads the window and finds nothing of ours; on a quiet one the
 * probe rules new rows out. Either way such a pass costs round trips and
 * little else, so they are counted here, through a proxy that holds every
 * answer back (round-trip-proxy.ts), on a warmed-up pool: and a warmed-up
 * pass prepares no statement again (each would be parsed and planned anew,
 * and left on the server until the connection closes).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createTestDb, type TestDb } from '../support/db.js';
import { seedMissions } from '../support/missions.js';
import { startRoundTripProxy, type RoundTripProxy } from '../support/round-trip-proxy.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { createMetrics } from '../../src/metrics.js';
import { createProjection, type Projection } from '../../src/projection/refresh.js';
import { createPass } from '../../src/schedule/pass.js';
import { createLifecycle } from '../../src/schedule/lifecycle.js';

const log = pino({ level: 'silent' });
/** Long enough that no answer overtakes what the client sends without waiting. */
const DELAY_MS = 25;
const POOL_MAX = 4;

let db: TestDb;
let proxy: RoundTripProxy;
let sql: Sql;
let n = 0;

/** Another app's row, committed apart from the coordinator: the database is busy. */
async function otherAppCommits(): Promise<void> {
  await db.sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id)
    VALUES ('todo', 'tasks', ${`task-${n++}`}, 'someone', 'update', '{"done":true}'::jsonb, 'other-app')`;
}

beforeAll(async () => {
  db = await createTestDb();
  proxy = await startRoundTripProxy(db.url, { delayMs: DELAY_MS });
  sql = createSql(proxy.url, { max: POOL_MAX });
  const ahead = new Date(Date.now() + 86_400_000).toISOString();
  await seedMissions(db.sql, [
    { userId: 'u1', missionId: 'm1', nextRunAt: ahead },
    { userId: 'u2', missionId: 'm2', nextRunAt: ahead },
  ]);
});

afterAll(async () => {
  await sql?.end({ timeout: 5 });
  await proxy?.close();
  await db?.drop();
});

/** Runs `step` until warm (every statement prepared, generic plans chosen), then once counted. */
async function counted<T>(step: () => Promise<T>, before: () => Promise<void>): Promise<{ result: T; roundTrips: number; depth: number; parses: number }> {
  for (let i = 0; i < 8; i++) {
    await before();
    await step();
  }
  return countOnce(step, before);
}

/** One step, counted. */
async function countOnce<T>(step: () => Promise<T>, before: () => Promise<void>): Promise<{ result: T; roundTrips: number; depth: number; parses: number }> {
  await before();
  proxy.reset();
  const result = await step();
  return { result, roundTrips: proxy.roundTrips(), depth: proxy.depth(), parses: proxy.parses() };
}

describe('a refresh with nothing of ours to read', () => {
  let projection: Projection;
  beforeEach(async () => {
    projection = createProjection({ sql, log, batchRows: 1000, cacheRecords: 100 });
    await projection.refresh();
  });

  it('on a busy database waits for 4 round trips: begin, the opening statements, the window, the cursor write with the commit', async () => {
    const { result, roundTrips, parses } = await counted(() => projection.refresh(), otherAppCommits);
    expect(result).toMatchObject({ ran: true, rowsApplied: 0 });
    expect(roundTrips).toBe(4);
    expect(parses).toBe(0);
  });

  it('on a quiet database waits for 3: the probe rules the window out', async () => {
    // The probe looks at the whole cluster's transactions, and other test files share it:
    // the fewest of many passes is one that nothing else's commit made read the window.
    // The warm-up may have found none quiet, so a quiet pass's own statements (the cursor
    // write that prunes in place) can be new to a connection: such a pass prepares them, once
    // per connection, and is not counted.
    await counted(() => projection.refresh(), async () => {});
    let fewest = Infinity;
    let preparing = 0;
    for (let i = 0; i < 200 && fewest > 3; i++) {
      proxy.reset();
      const result = await projection.refresh();
      expect(result).toMatchObject({ ran: true, rowsApplied: 0 });
      if (proxy.parses() > 0) {
        preparing++;
        continue;
      }
      expect(proxy.roundTrips()).toBeLessThanOrEqual(4);
      fewest = Math.min(fewest, proxy.roundTrips());
    }
    expect(fewest).toBe(3);
    expect(preparing).toBeLessThanOrEqual(POOL_MAX);
  }, 60_000);
});

describe('a whole pass with nothing to do', () => {
  it('on a busy database waits for its refresh alone: the due scan goes with the refresh\'s commit, and the sweep sends nothing', async () => {
    // The periodic full settle and stale check run on the clock: held still, they ran in the
    // warm-up and are not due again (on a real clock they run every 2 and 3.3 s).
    const clock = vi.spyOn(Date, 'now').mockReturnValue(Date.now());
    // Two connections, one for the refresh and one for the scan: the warm-up prepares each
    // statement on the connection that ran it, and a statement new to a connection costs a
    // round trip once.
    const connections = 2;
    const pool = createSql(proxy.url, { max: connections });
    try {
      const projection = createProjection({ sql: pool, log, batchRows: 1000, cacheRecords: 100 });
      const lifecycle = createLifecycle({ sql: pool, log, registry: new Registry(), instanceId: 'round-trips', leaseMs: 60_000, fallback: { enabled: true, plan() {} } });
      const runPass = createPass({
        sql: pool,
        projection,
        metrics: createMetrics(),
        log,
        dispatch: async () => {},
        sweep: (info) => lifecycle.sweep(info, { reroute: async () => {} }),
      });
      let c = await counted(() => runPass(), otherAppCommits);
      // Which of the two connections the refresh takes, and which the scan, depends on timing:
      // a pass that swaps them against every warm-up pass prepares the refresh's statements on
      // the scan's connection (and the other way round), once per connection. Such a pass is
      // counted again; no more than one per connection may prepare.
      let preparing = 0;
      while (c.parses > 0 && preparing < connections) {
        preparing++;
        c = await countOnce(() => runPass(), otherAppCommits);
      }
      const { result, roundTrips, depth, parses } = c;
      expect(result.stats).toMatchObject({ projectionRan: true, rowsApplied: 0, missionsDue: 0 });
      // The scan on a connection of its own, sent as the refresh's last statements are.
      // Checked together, so a failure shows all three (a long chain with statements prepared
      // again means the pass met a connection its statements were new to).
      expect({ roundTrips, depth, parses }).toEqual({ roundTrips: 5, depth: 4, parses: 0 });
    } finally {
      clock.mockRestore();
      await pool.end({ timeout: 5 });
    }
  });
});
