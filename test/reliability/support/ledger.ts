/**
 * Seeding due missions the way mana-sync writes them, and the exactly-once
 * audit the reliability tests end with: one occurrence per due mission, each
 * done, each iteration id written by exactly one sync_changes row and present
 * exactly once in the projected mission.
 */
import type { Sql } from '../../../src/db/pool.js';
import { waitFor as pollFor } from '../../support/wait.js';
import { fileSeed } from '../../support/seed.js';
import { seedMissions as seedShared } from '../../support/missions.js';
import { iterationIdFor } from '../../../src/schedule/occurrence-id.js';
import { parseInstant } from '../../../src/projection/instant.js';

export interface SeedMission {
  userId: string;
  missionId: string;
  /** ISO instant the mission falls due. */
  nextRunAt: string;
}

/** Writes missions as mana-sync 'insert' rows (the whole record, daily cadence so each is due once here). */
export async function seedMissions(sql: Sql, missions: SeedMission[]): Promise<void> {
  await seedShared(sql, missions, { clientId: 'seed' });
}

/** The iteration id every party derives for the mission's first due occurrence. */
export function expectedIterationId(m: SeedMission): string {
  return iterationIdFor(m.userId, m.missionId, parseInstant(m.nextRunAt)!);
}

export interface Audit {
  missions: number;
  occurrences: number;
  byStatus: Record<string, number>;
  /** Seeded missions with no occurrence for their due instant. */
  lost: string[];
  /** Occurrences still open (created, nudged, claimed, planning, waiting). */
  open: number;
  /** Occurrences in 'planning' or 'claimed' whose lease already passed. */
  stuckPastLease: number;
  /** Iteration ids written by more than one sync_changes row, with the count. */
  duplicateWrites: [string, number][];
  /** Done occurrences (planned/completed) with no row writing their iteration. */
  unwritten: string[];
  /** Iteration ids written to the log that match no occurrence. */
  strayWrites: string[];
  /** Occurrences whose id appears in the projected mission other than exactly once. */
  projectionMismatch: [string, number][];
  /** Rows written by the server runner and by devices. */
  writesBy: Record<string, number>;
}

/** Audits the ledger, the change log and the projection against the seeded missions. */
export async function audit(sql: Sql, seeded: SeedMission[]): Promise<Audit> {
  const occ = await sql<{ id: string; status: string; inProjection: number; pastLease: boolean }[]>`
    SELECT o.iteration_id::text AS id, o.status,
      (SELECT count(*)::int FROM jsonb_array_elements(
         CASE WHEN jsonb_typeof(s.fields -> 'iterations') = 'array' THEN s.fields -> 'iterations' ELSE '[]'::jsonb END) it
       WHERE it ->> 'id' = o.iteration_id::text) AS "inProjection",
      (o.status IN ('planning', 'claimed') AND o.lease_expires_at < now()) AS "pastLease"
    FROM mana_ai.occurrences o
    LEFT JOIN mana_ai.mission_snapshots s ON s.user_id = o.user_id AND s.mission_id = o.mission_id`;
  const writes = await sql<{ id: string; n: number }[]>`
    SELECT it ->> 'id' AS id, count(*)::int AS n
    FROM sync_changes c
    CROSS JOIN LATERAL jsonb_array_elements(
      CASE WHEN jsonb_typeof(c.data -> 'iterations') = 'array' THEN c.data -> 'iterations' ELSE '[]'::jsonb END) it
    WHERE c.app_id = 'ai' AND c.table_name = 'aiMissions'
    GROUP BY 1`;
  const writers = await sql<{ client: string; n: number }[]>`
    SELECT coalesce(client_id, '?') AS client, count(*)::int AS n FROM sync_changes
    WHERE app_id = 'ai' AND table_name = 'aiMissions' AND op = 'update' GROUP BY 1`;

  const byId = new Map(occ.map((o) => [o.id, o]));
  const written = new Map(writes.map((w) => [w.id, w.n]));
  const byStatus: Record<string, number> = {};
  for (const o of occ) byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
  return {
    missions: seeded.length,
    occurrences: occ.length,
    byStatus,
    lost: seeded.map(expectedIterationId).filter((id) => !byId.has(id)),
    open: occ.filter((o) => ['created', 'nudged', 'claimed', 'planning', 'waiting'].includes(o.status)).length,
    stuckPastLease: occ.filter((o) => o.pastLease).length,
    duplicateWrites: [...written].filter(([, n]) => n > 1),
    unwritten: occ.filter((o) => (o.status === 'planned' || o.status === 'completed') && !written.has(o.id)).map((o) => o.id),
    strayWrites: [...written.keys()].filter((id) => !byId.has(id)),
    projectionMismatch: occ.filter((o) => o.inProjection !== 1).map((o) => [o.id, o.inProjection]),
    writesBy: Object.fromEntries(writers.map((w) => [w.client, w.n])),
  };
}

/** Open occurrences right now (for progress and settle loops). */
export async function openCount(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM mana_ai.occurrences WHERE status IN ('created', 'nudged', 'claimed', 'planning', 'waiting')`;
  return row?.n ?? 0;
}

/** Occurrences in a done status right now. */
export async function doneCount(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM mana_ai.occurrences WHERE status IN ('planned', 'completed', 'superseded', 'failed')`;
  return row?.n ?? 0;
}

export const SOAK = Boolean(process.env['SOAK']) && process.env['SOAK'] !== '0';

export { sleep } from '../../support/wait.js';

/** waitFor polling every 100 ms by default: reliability checks query a loaded database. */
export function waitFor<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what: string, everyMs = 100): Promise<T> {
  return pollFor(check, timeoutMs, what, everyMs);
}

/** Random integer in [min, max]. */
/** Every random choice of the reliability suites (kill times, delays), seeded and printed on failure. */
const rng = fileSeed('reliability');
export const between = (min: number, max: number) => rng.int(min, max);

/**
 * Prints a test's figures as one line (vitest shows it), and writes them to
 * $RELIABILITY_RESULTS/<name>.json when that folder is set, for RELIABILITY.md.
 */
export async function report(name: string, figures: Record<string, unknown>): Promise<void> {
  const line = JSON.stringify({ test: name, soak: SOAK, at: new Date().toISOString(), ...figures });
  process.stdout.write(`[reliability] ${line}\n`);
  const dir = process.env['RELIABILITY_RESULTS'];
  if (dir) {
    const { mkdir, writeFile } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    await writeFile(`${dir}/${name}${SOAK ? '.soak' : ''}.json`, `${line}\n`);
  }
}

/** What is still open, grouped, for a failure message. */
export async function describeOpen(sql: Sql): Promise<string> {
  const rows = await sql<{ status: string; claimedBy: string | null; lastError: string | null; attempts: number; n: number; pastLease: number }[]>`
    SELECT status, claimed_by AS "claimedBy", last_error AS "lastError", attempts, count(*)::int AS n,
           count(*) FILTER (WHERE lease_expires_at < now())::int AS "pastLease"
    FROM mana_ai.occurrences WHERE status IN ('created', 'nudged', 'claimed', 'planning', 'waiting')
    GROUP BY 1, 2, 3, 4 ORDER BY n DESC LIMIT 20`;
  return JSON.stringify(rows, null, 1);
}
