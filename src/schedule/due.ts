/**
 * The due scan: queries on the partial index of mission_snapshots. A pass
 * asks everything it needs of it in one round trip (scanDue): on a busy
 * database each round trip is most of what a pass with nothing to do costs.
 */
import type { Sql } from '../db/pool.js';
import { AGENT_HELD_SQL } from './reasons.js';

export interface DueMission {
  userId: string;
  missionId: string;
  /** When the mission falls due (due-rule.ts dueInstant of its nextRunAt), canonical UTC with microseconds. */
  nextRunAt: string;
}

const TS = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

/**
 * A mission that can fall due (projection/due-rule.ts: what the webapp's
 * runner would run, in its author's view) and whose agent is active
 * (projection/agent-status.ts); must match the partial index predicate
 * (mission_snapshots_due_idx).
 */
const DUEABLE = `s.present AND NOT s.soft_deleted AND s.state = 'active' AND s.next_run_at IS NOT NULL AND s.listed AND s.author = s.user_id
  AND s.agent_status = 'active'`;
/**
 * No occurrence handles the mission's current nextRunAt: none exists, or
 * the one there was superseded because the agent stopped (its id is the
 * same when the agent resumes; creation reopens it, transitions.ts).
 */
const UNHANDLED = `NOT EXISTS (
  SELECT 1 FROM mana_ai.occurrences o
  WHERE o.user_id = s.user_id AND o.mission_id = s.mission_id AND o.due_at = s.next_run_at
    AND NOT (o.status = 'superseded' AND coalesce(o.reason IN (${AGENT_HELD_SQL}), false)))`;
/** The user has a presence row (a socket on some instance). */
const PRESENT = `EXISTS (SELECT 1 FROM mana_ai.presence p WHERE p.user_id = s.user_id)`;
const MISSION = `s.user_id AS "userId", s.mission_id AS "missionId", to_char(s.next_run_at AT TIME ZONE 'UTC', ${TS}) AS "nextRunAt"`;

export interface ScanOptions {
  limit: number;
  /** Skip missions whose occurrence for this nextRunAt exists (a backlog due for minutes is not dispatched again each pass). */
  unhandledOnly?: boolean;
  /** The instant to scan at (canonical, bound as text so its microseconds survive); default now(). */
  at?: string;
  /**
   * Only missions after this point of the scan order (nextRunAt, userId,
   * missionId): an earlier scan saw everything up to it. With nextRunAt
   * alone, everything due up to that instant.
   */
  from?: ScanPoint;
  /**
   * Also the missions falling due within `withinMs` after the instant (and
   * after `after`, when given) of users with a presence row and no
   * occurrence yet: the router readies them ahead. Only users with a
   * socket somewhere: at the top of an hour the 10,000 with a socket must not
   * queue behind 90,000 without one.
   */
  upcoming?: { withinMs: number; after?: string };
}

/** A point in the due scan's order: (nextRunAt, userId, missionId); nextRunAt alone means after that whole instant. */
export interface ScanPoint {
  nextRunAt: string;
  userId?: string;
  missionId?: string;
}

export interface Scan {
  /** The instant scanned at, canonical. */
  at: string;
  /** Due at `at`, oldest first; a user's missions due at one instant stay together. */
  due: DueMission[];
  /** The earliest nextRunAt after `at` with no occurrence: when the loop wakes next. */
  next: Date | null;
  upcoming: DueMission[];
  /** As of `at`: a claim deadline or lease has passed; a waiting occurrence's retry has come. */
  upkeep: { expiries: boolean; retries: boolean };
}

/**
 * One database instant for the due scan, the look-ahead, the next wake-up and
 * whether the sweep has occurrences to take,
 * so nothing falls between them; a mission that falls due while the pass
 * runs comes back as `next` ≤ now (→ the loop runs again at once).
 */
export async function scanDue(sql: Sql, opts: ScanOptions): Promise<Scan> {
  const u = opts.upcoming;
  const fromAt = opts.from?.nextRunAt ?? null;
  const fromUser = opts.from?.userId ?? null;
  const fromMission = opts.from?.missionId ?? null;
  const rows = await sql<{ at: string; next: Date | null; expiries: boolean; retries: boolean; kind: 'd' | 'u' | null; userId: string; missionId: string; nextRunAt: string }[]>`
    WITH t AS MATERIALIZED (SELECT coalesce(${opts.at ?? null}::text::timestamptz, now()) AS at),
    n AS MATERIALIZED (
      SELECT (SELECT s.next_run_at FROM mana_ai.mission_snapshots s
        WHERE ${sql.unsafe(DUEABLE)} AND s.next_run_at > t.at AND ${sql.unsafe(UNHANDLED)}
        ORDER BY s.next_run_at LIMIT 1) AS next,
        -- One probe of each partial index: the sweep skips the scans with nothing to take.
        (SELECT min(deadline_at) FROM mana_ai.occurrences WHERE status = 'nudged') <= t.at
          OR (SELECT min(lease_expires_at) FROM mana_ai.occurrences WHERE status IN ('claimed', 'planning')) <= t.at AS expiries,
        (SELECT min(next_attempt_at) FROM mana_ai.occurrences WHERE status = 'waiting') <= t.at AS retries
      FROM t
    )
    SELECT to_char(t.at AT TIME ZONE 'UTC', ${sql.unsafe(TS)}) AS at, n.next, n.expiries IS TRUE AS expiries, n.retries IS TRUE AS retries, m.kind, m."userId", m."missionId", m."nextRunAt"
    FROM t CROSS JOIN n LEFT JOIN LATERAL (
      (SELECT 'd' AS kind, ${sql.unsafe(MISSION)}
        FROM mana_ai.mission_snapshots s
        WHERE ${sql.unsafe(DUEABLE)} AND s.next_run_at <= t.at
          -- The index's key order: a batch continues from the previous one's last mission.
          AND (s.next_run_at, s.user_id, s.mission_id) > (coalesce(${fromAt}::text::timestamptz, '-infinity'),
            coalesce(${fromUser}::text, CASE WHEN ${fromAt}::text IS NULL THEN '' END), coalesce(${fromMission}::text, ''))
          AND (${opts.unhandledOnly ?? false} = false OR ${sql.unsafe(UNHANDLED)})
        ORDER BY s.next_run_at, s.user_id, s.mission_id
        LIMIT ${opts.limit})
      UNION ALL
      (SELECT 'u' AS kind, ${sql.unsafe(MISSION)}
        FROM mana_ai.mission_snapshots s
        WHERE ${u !== undefined} AND ${sql.unsafe(DUEABLE)}
          AND s.next_run_at > greatest(t.at, ${u?.after ?? null}::text::timestamptz)
          AND s.next_run_at <= t.at + make_interval(secs => ${(u?.withinMs ?? 0) / 1000})
          AND ${sql.unsafe(PRESENT)} AND ${sql.unsafe(UNHANDLED)}
        ORDER BY s.next_run_at
        LIMIT ${u ? opts.limit : 0})
    ) m ON true
    ORDER BY m.kind, m."nextRunAt", m."userId", m."missionId"`;
  const first = rows[0]!;
  const scan: Scan = { at: first.at, next: first.next, due: [], upcoming: [], upkeep: { expiries: first.expiries, retries: first.retries } };
  for (const r of rows) {
    if (r.kind === null) continue;
    (r.kind === 'd' ? scan.due : scan.upcoming).push({ userId: r.userId, missionId: r.missionId, nextRunAt: r.nextRunAt });
  }
  return scan;
}

/** Due missions, oldest first (scanDue's `due`). */
export async function findDueMissions(sql: Sql, opts: { limit: number; unhandledOnly?: boolean; at?: string }): Promise<DueMission[]> {
  return (await scanDue(sql, opts)).due;
}

/**
 * The earliest nextRunAt after `after` (default: now) of a mission with no
 * occurrence for it (scanDue's `next`).
 */
export async function nextDueAt(sql: Sql, after?: string): Promise<Date | null> {
  return (await scanDue(sql, { limit: 0, ...(after ? { at: after } : {}) })).next;
}

/**
 * Of these users, the ones with a mission falling due after now and by their
 * given instant (no occurrence yet): their push waits for it, so one push
 * names both.
 */
export async function usersWithMissionsDueBy(sql: Sql, until: Map<string, string>): Promise<Set<string>> {
  if (until.size === 0) return new Set();
  const rows = await sql<{ userId: string }[]>`
    SELECT DISTINCT s.user_id AS "userId"
    FROM unnest(${[...until.keys()]}::text[], ${[...until.values()]}::text[]::timestamptz[]) AS x(u, until)
    JOIN mana_ai.mission_snapshots s ON s.user_id = x.u
    WHERE ${sql.unsafe(DUEABLE)} AND s.next_run_at > now() AND s.next_run_at <= x.until AND ${sql.unsafe(UNHANDLED)}`;
  return new Set(rows.map((r) => r.userId));
}
