/**
 * Writing a server iteration back into the change log (docs/contract.md §1):
 * one sync_changes row, op 'update', `{ iterations, nextRunAt, updatedAt }`,
 * per-field timestamps in the column this deployment has, written inside a
 * per-user transaction under the forced RLS policy.
 *
 * The occurrence's compare-and-set (planning → planned, held by us) runs in
 * the SAME transaction as the insert: either both land or neither, so an
 * instance that lost its lease, or crashed between the LLM answer and the
 * write, can never add a second iteration.
 */
import type { Sql, TxSql } from '../db/pool.js';
import { syncChanges } from '../db/sync-table.js';
import type { SyncColumns } from '../projection/change-source.js';
import { currentRecord, MISSIONS } from '../projection/change-source.js';
import { instantMs, instantOf } from '../projection/instant.js';
import type { MissionIteration } from '../projection/mission.js';
import { mergeIterations } from './iteration.js';

export const RUNNER_CLIENT_ID = 'mana-ai-runner';
export const RUNNER_ACTOR = { kind: 'system', source: 'mission-runner' } as const;

export interface WriteTarget {
  cols: SyncColumns;
  /** Role switched to for the insert so RLS applies (see db/pool.ts withUser). */
  writerRole: string | undefined;
}

function stampsFor(fields: string[], at: Date, cols: SyncColumns) {
  const iso = at.toISOString();
  // field_meta when the deployment has it (newer), else field_timestamps.
  if (cols.fieldMeta) {
    return { field_meta: Object.fromEntries(fields.map((f) => [f, { at: iso, actor: RUNNER_ACTOR, origin: 'system' }])) };
  }
  return { field_timestamps: Object.fromEntries(fields.map((f) => [f, iso])) };
}

/** Inserts one update row for a mission as the given user. Caller owns the transaction. */
export async function insertMissionUpdate(
  tx: TxSql,
  target: WriteTarget,
  input: { userId: string; missionId: string; data: Record<string, unknown>; at: Date },
): Promise<void> {
  // One round trip for both: set_config('role', …, true) is SET LOCAL ROLE.
  if (target.writerRole) await tx`SELECT set_config('app.current_user_id', ${input.userId}, true), set_config('role', ${target.writerRole}, true)`;
  else await tx`SELECT set_config('app.current_user_id', ${input.userId}, true)`;
  const stamps = stampsFor(Object.keys(input.data), input.at, target.cols);
  const row: Record<string, unknown> = {
    app_id: MISSIONS.appId,
    table_name: MISSIONS.tableName,
    record_id: input.missionId,
    user_id: input.userId,
    op: 'update',
    data: tx.json(input.data as never),
    client_id: RUNNER_CLIENT_ID,
    ...Object.fromEntries(Object.entries(stamps).map(([k, v]) => [k, tx.json(v as never)])),
  };
  if (target.cols.actor) row['actor'] = tx.json(RUNNER_ACTOR);
  if (target.cols.origin) row['origin'] = 'system';
  await tx`INSERT INTO ${syncChanges(tx, target.cols.schema)} ${tx(row as never, Object.keys(row) as never)}`;
}

export interface WriteIterationInput {
  userId: string;
  missionId: string;
  iterationId: string;
  holder: string;
  iteration: MissionIteration;
  /** The mission's iterations as the freshest projection has them. */
  baseIterations: unknown;
  nextRunAt: string | null;
  finalStatus: 'planned' | 'failed';
  lastError?: string;
  at: Date;
}

/**
 * True when a row of the change log already carries this occurrence's
 * iteration: a device whose lease ran out may have written it just before,
 * and the projection (which the planner read) has not caught up yet. Only
 * rows since shortly before the occurrence existed can carry its id.
 */
async function iterationInLog(tx: TxSql, schema: string, input: { userId: string; missionId: string; iterationId: string }): Promise<boolean> {
  const [row] = await tx`
    SELECT 1 AS hit FROM ${syncChanges(tx, schema)} c
    JOIN mana_ai.occurrences o ON o.iteration_id = ${input.iterationId}
    WHERE c.table_name = ${MISSIONS.tableName} AND c.record_id = ${input.missionId}
      AND c.user_id = ${input.userId} AND c.app_id = ${MISSIONS.appId}
      AND c.created_at >= o.created_at - interval '1 hour'
      AND jsonb_typeof(c.data -> 'iterations') = 'array'
      AND c.data -> 'iterations' @> jsonb_build_array(jsonb_build_object('id', ${input.iterationId}::text))
    LIMIT 1`;
  return row !== undefined;
}

/**
 * Writes the iteration if this holder still owns the occurrence; 'lost'
 * otherwise (nothing written). 'present' when the log already has an
 * iteration with this id (a device planned it): nothing is written and the
 * occurrence is completed. A device write committing after this check can
 * still add a second row; leases far longer than a device's planning keep
 * that window closed in practice.
 */
export async function writeIteration(sql: Sql, target: WriteTarget, input: WriteIterationInput): Promise<WriteResult> {
  return (await sql.begin(async (tx) => {
    const settle = async (status: 'completed' | 'superseded', why: string | null): Promise<WriteResult> => {
      const [own] = await tx`
        UPDATE mana_ai.occurrences SET status = ${status}, lease_expires_at = NULL, last_error = coalesce(${why}, last_error),
          reason = CASE WHEN ${status} = 'superseded' THEN 'mission-deleted' ELSE reason END, updated_at = now()
        WHERE iteration_id = ${input.iterationId} AND status = 'planning' AND claimed_by = ${input.holder}
        RETURNING iteration_id`;
      return own ? (status === 'completed' ? 'present' : 'gone') : 'lost';
    };
    if (await iterationInLog(tx, target.cols.schema, input)) return settle('completed', null);
    // iterations is ONE field under LWW: merge into what the committed log holds now, not
    // only what the projection saw, so a device iteration of the last moments is kept.
    const current = await currentRecord(tx, target.cols, input.userId, input.missionId);
    // An update on a deleted record would re-create it from this row alone (docs/contract.md §1).
    if (!current || current['deletedAt']) return settle('superseded', 'mission deleted while the server planned it');
    const [own] = await tx`
      UPDATE mana_ai.occurrences SET status = ${input.finalStatus}, lease_expires_at = NULL, plan = ${tx.json(input.iteration as never)},
        written_at = ${instantOf(input.at)}, last_error = ${input.lastError ?? null},
        reason = ${input.finalStatus === 'failed' ? 'plan-failed' : null}, updated_at = now()
      WHERE iteration_id = ${input.iterationId} AND status = 'planning' AND claimed_by = ${input.holder}
      RETURNING iteration_id`;
    if (!own) return 'lost';
    const iterations = mergeIterations(current['iterations'], [...mergeIterations(input.baseIterations, []), input.iteration]);
    await insertMissionUpdate(tx, target, {
      userId: input.userId,
      missionId: input.missionId,
      data: { iterations, nextRunAt: input.nextRunAt, updatedAt: input.at.toISOString() },
      at: input.at,
    });
    return 'written';
  })) as WriteResult;
}

/** written: ours landed; present: the log already had it (completed); gone: mission deleted (superseded); lost: not ours any more. */
export type WriteResult = 'written' | 'lost' | 'present' | 'gone';

export interface DroppedWrite {
  iterationId: string;
  userId: string;
  missionId: string;
  plan: MissionIteration;
  writtenAt: string;
  iterations: unknown;
  /** The instant of the write that won the iterations field (the one that dropped ours). */
  winningAt: string;
}

/**
 * Server iterations the projection has passed over: the mission's
 * `iterations` field carries a stamp at or after our write, yet lacks our
 * iteration — a concurrent device write of the whole array won LWW.
 */
export async function findDroppedWrites(sql: Sql, limit = 100): Promise<DroppedWrite[]> {
  return sql<DroppedWrite[]>`
    SELECT o.iteration_id::text AS "iterationId", o.user_id AS "userId", o.mission_id AS "missionId",
           o.plan, o.written_at AS "writtenAt", s.fields -> 'iterations' AS iterations,
           split_part(s.versions ->> 'iterations', '|', 1) AS "winningAt"
    FROM mana_ai.occurrences o
    JOIN mana_ai.mission_snapshots s ON s.user_id = o.user_id AND s.mission_id = o.mission_id
    WHERE o.status IN ('planned', 'failed') AND o.written_at IS NOT NULL
      AND o.updated_at > now() - interval '1 day'
      AND s.present AND NOT s.soft_deleted
      AND split_part(s.versions ->> 'iterations', '|', 1) >= o.written_at
      AND NOT coalesce((s.fields -> 'iterations') @> jsonb_build_array(jsonb_build_object('id', o.iteration_id::text)), false)
    LIMIT ${limit}`;
}

/** Writes a dropped iteration again, merged into the freshest iterations; CAS on written_at so one instance does it. */
export async function rewriteDropped(sql: Sql, target: WriteTarget, d: DroppedWrite, now: Date): Promise<boolean> {
  // Stamped after the winning write: a device whose clock runs ahead stamps
  // its write in the future, and a repair stamped "now" would lose LWW again
  // and be rewritten on every pass until our clock caught up.
  const at = new Date(Math.max(now.getTime(), instantMs(d.winningAt) + 1));
  return (await sql.begin(async (tx) => {
    const [own] = await tx`
      UPDATE mana_ai.occurrences SET written_at = ${instantOf(at)}, repairs = repairs + 1, updated_at = now()
      WHERE iteration_id = ${d.iterationId} AND written_at = ${d.writtenAt}
      RETURNING iteration_id`;
    if (!own) return false;
    // Only iterations: the device's later write may have moved nextRunAt on; keep it.
    await insertMissionUpdate(tx, target, {
      userId: d.userId,
      missionId: d.missionId,
      data: { iterations: mergeIterations(d.iterations, [d.plan]), updatedAt: at.toISOString() },
      at,
    });
    return true;
  })) as boolean;
}
