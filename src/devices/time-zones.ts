/**
 * The time zone each user's devices report (with their socket auth and
 * their push subscription). Kept per user, the latest report winning, in
 * Intl's canonical spelling; a name Intl does not know is ignored with a
 * logged reason and counted. Reports arriving together (a reconnect storm)
 * are written in one statement per batch, and only when the zone changed.
 * The server planner reads a user's zone with the mission it plans
 * (planner/planning-read.ts).
 */
import { Counter, type Registry } from 'prom-client';
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import { createBatcher } from '../lib/batcher.js';
import { canonicalTimeZone } from '../lib/time-zone.js';

export interface TimeZoneReport {
  userId: string;
  deviceId: string;
  /** As the device sent it: `Intl.DateTimeFormat().resolvedOptions().timeZone`. */
  timeZone: string;
}

/** stored: written (new or changed); unchanged: the user already had it; invalid: not a zone Intl knows. */
export type ReportOutcome = 'stored' | 'unchanged' | 'invalid';

export interface TimeZoneStore {
  report(r: TimeZoneReport): Promise<ReportOutcome>;
}

const MAX_BATCH = 1_000;

export function createTimeZoneStore(deps: { sql: Sql; log: Logger; registry?: Registry }): TimeZoneStore {
  const { sql, log } = deps;
  const reports = new Counter({
    name: 'mana_ai_time_zone_reports_total',
    help: 'Time zones reported by devices, by outcome (stored, unchanged, invalid)',
    labelNames: ['outcome'] as const,
    registers: deps.registry ? [deps.registry] : [],
  });

  const write = createBatcher<{ userId: string; deviceId: string; zone: string }, ReportOutcome>({
    key: (r) => r.userId,
    maxBatch: MAX_BATCH,
    concurrency: 2,
    async run(items) {
      const changed = await sql<{ userId: string }[]>`
        INSERT INTO mana_ai.user_time_zones AS z (user_id, time_zone, device_id)
        SELECT * FROM unnest(${items.map((i) => i.userId)}::text[], ${items.map((i) => i.zone)}::text[], ${items.map((i) => i.deviceId)}::text[])
        ON CONFLICT (user_id) DO UPDATE SET time_zone = excluded.time_zone, device_id = excluded.device_id, reported_at = now()
          WHERE z.time_zone IS DISTINCT FROM excluded.time_zone
        RETURNING user_id AS "userId"`;
      const stored = new Set(changed.map((r) => r.userId));
      return items.map((i) => (stored.has(i.userId) ? 'stored' : 'unchanged'));
    },
  });

  return {
    async report(r) {
      const zone = canonicalTimeZone(r.timeZone);
      if (zone === undefined) {
        reports.inc({ outcome: 'invalid' });
        log.info({ userId: r.userId, deviceId: r.deviceId, timeZone: r.timeZone.slice(0, 64) }, 'ignoring a reported time zone Intl does not know');
        return 'invalid';
      }
      const outcome = await write({ userId: r.userId, deviceId: r.deviceId, zone });
      reports.inc({ outcome });
      return outcome;
    },
  };
}
