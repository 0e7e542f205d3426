/**
 * Writing a server iteration back into the change log (docs/contract.md §6):
 * one sync_changes row, op 'update', shaped as mana-sync stores a device's
 * update (writeback-row.ts), inserted inside a per-user transaction under
 * the forced RLS policy.
 *
 * The occurrence's compare-and-set (planning → planned, held by us) runs in
 * the SAME transaction as the insert: either both land or neither, so an
 * instance that lost its lease, or crashed between the LLM answer and the
 * write, can never add a second iteration.
 */
import type { Sql, TxSql } from '../db/pool.js';
import { pipelinedTx } from '../db/pipelined-tx.js';
import { syncChanges } from '../db/sync-table.js';
import type { SyncColumns } from '../projection/change-source.js';
import { currentRecord } from '../projection/change-source.js';
import { MISSIONS } from '../projection/tables.js';
import { instantMs, instantOf } from '../projection/instant.js';
import type { MissionIteration } from '../projection/mission.js';
import { mergeIterations } from './iteration.js';
import { aiActor, missionUpdateRow, spaceOf, type MissionUpdate, type WritePrincipal } from './writeback-row.js';

export { RUNNER_CLIENT_ID, DEFAULT_AGENT, type WritePrincipal } from './writeback-row.js';

export interface WriteTarget {
  cols: SyncColumns;
  /** Whether sync_changes has `space_id` (current mana-sync does): a row then names the mission's space. */
  spaceColumn: boolean;
  /** Role switched to for the insert so RLS applies (see db/pool.ts withUser). */
  writerRole: string | undefined;
}

/** Whether `schema`.sync_changes has mana-sync's `space_id` column; read once at start. */
export async function detectSpaceColumn(sql: Sql, schema: string): Promise<boolean> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM information_schema.columns
    WHERE table_schema = ${schema} AND table_name = 'sync_changes' AND column_name = 'space_id'`;
  return (row?.n ?? 0) > 0;
}

/**
 * Inserts one update row for a mission as the given user. Caller owns the
 * transaction, and must make this insert its LAST statement.
 *
 * `created_at` is stamped by the insert itself (clock_timestamp()), not by
 * the column's default (the transaction's start): mana-sync serves a
 * device the rows with `created_at > since`, where `since` is the instant
 * its previous pull ended, so a row whose `created_at` lies before a pull
 * that could not see it yet is never pulled by that device. Stamped here,
 * only the time from this statement to the commit (a round trip, under a
 * millisecond on a healthy database) plus any clock skew between mana-sync
 * and Postgres remains as that window; mana-sync's own inserts have the
 * same one.
 */
export async function insertMissionUpdate(tx: TxSql, target: WriteTarget, update: MissionUpdate): Promise<void> {
  await Promise.all(missionUpdateStatements(tx, target, update));
}

/**
 * The statements of {@link insertMissionUpdate}, not sent yet: a caller
 * pipelining its transaction sends them with its last statements.
 */
function missionUpdateStatements(tx: TxSql, target: WriteTarget, update: MissionUpdate): [PromiseLike<unknown>, PromiseLike<unknown>] {
  // One statement for both: set_config('role', …, true) is SET LOCAL ROLE.
  const scope = target.writerRole
    ? tx`SELECT set_config('app.current_user_id', ${update.userId}, true), set_config('role', ${target.writerRole}, true)`
    : tx`SELECT set_config('app.current_user_id', ${update.userId}, true)`;
  const row = missionUpdateRow(update, { ...target.cols, spaceId: target.spaceColumn });
  const keys = Object.keys(row);
  const table = syncChanges(tx, target.cols.schema);
  // One JSON parameter read back through the table's own row type, so every
  // column gets its type from mana-sync's table (jsonb stays jsonb, text text).
  const insert = tx`
    INSERT INTO ${table} (${tx(keys)}, created_at)
    SELECT ${tx.unsafe(keys.map((k) => `r."${k}"`).join(', '))}, clock_timestamp()
    FROM jsonb_populate_record(NULL::${table}, ${JSON.stringify(row)}::text::jsonb) AS r`;
  return [scope, insert];
}

export interface WriteIterationInput {
  userId: string;
  missionId: string;
  iterationId: string;
  holder: string;
  iteration: MissionIteration;
  /** The mission's iterations as the projection had them. */
  baseIterations: unknown;
  /**
   * The mission's next run: given, or worked out from the record as the log
   * holds it at the write (its cadence may have changed while it was planned).
   */
  nextRunAt: string | null | ((current: Record<string, unknown>) => string | null);
  finalStatus: 'planned' | 'failed';
  lastError?: string;
  at: Date;
  /** The mission's agent; the webapp's default agent when absent. */
  principal?: WritePrincipal;
  /**
   * Keep the iteration on the occurrence first, committed on its own ahead of
   * the write-back (a paid reply: a write-back that fails is retried from it,
   * never from a second LLM call).
   */
  keep?: boolean;
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
  return pipelinedTx(sql, async (p): Promise<WriteResult> => {
    const tx = p.tx;
    const cas = (status: string) => tx`iteration_id = ${input.iterationId} AND status = ${status} AND claimed_by = ${input.holder}`;
    // One write: the kept reply (its own transaction), then BEGIN, our hold locked (nobody ends
    // or takes the occurrence before we commit), whether the log has the iteration, and the record.
    const kept = input.keep ? p.send(tx`UPDATE mana_ai.occurrences SET plan = ${tx.json(input.iteration as never)}, updated_at = now() WHERE ${cas('planning')}`) : null;
    p.begin();
    const own = p.send(tx`SELECT 1 AS own FROM mana_ai.occurrences WHERE ${cas('planning')} FOR UPDATE`);
    const inLog = iterationInLog(tx, target.cols.schema, input);
    // iterations is ONE field under LWW: merge into what the committed log holds now, not
    // only what the projection saw, so a device iteration of the last moments is kept.
    const record = currentRecord(tx, target.cols, input.userId, input.missionId);
    const [[held], found, current] = await Promise.all([own, inLog, record, kept]);
    if (!held) return 'lost';
    const settle = async (status: 'completed' | 'superseded', why: string | null): Promise<WriteResult> => {
      await p.commit(tx`
        UPDATE mana_ai.occurrences SET status = ${status}, lease_expires_at = NULL, last_error = coalesce(${why}, last_error),
          reason = CASE WHEN ${status} = 'superseded' THEN 'mission-deleted' ELSE reason END, updated_at = now()
        WHERE ${cas('planning')}`);
      return status === 'completed' ? 'present' : 'gone';
    };
    if (found) return settle('completed', null);
    // An update on a deleted record would re-create it from this row alone (docs/contract.md §1).
    if (!current || current['deletedAt']) return settle('superseded', 'mission deleted while the server planned it');
    const iterations = mergeIterations(current['iterations'], [...mergeIterations(input.baseIterations, []), input.iteration]);
    const nextRunAt = typeof input.nextRunAt === 'function' ? input.nextRunAt(current) : input.nextRunAt;
    // nextRunAt null: no next run (a manual cadence), as the webapp's own run writes it.
    const update = missionUpdateStatements(tx, target, {
      userId: input.userId,
      missionId: input.missionId,
      data: { iterations, nextRunAt },
      at: input.at,
      actor: aiActor({ principal: input.principal, missionId: input.missionId, iterationId: input.iterationId, objective: current['objective'] }),
      spaceId: spaceOf(current),
    });
    // Sent together, the insert last; our hold is locked, so the compare-and-set holds.
    await p.commit(
      tx`
        UPDATE mana_ai.occurrences SET status = ${input.finalStatus}, lease_expires_at = NULL, plan = ${tx.json(input.iteration as never)},
          written_at = ${instantOf(input.at)}, last_error = ${input.lastError ?? null},
          reason = ${input.finalStatus === 'failed' ? 'plan-failed' : null}, updated_at = now()
        WHERE ${cas('planning')}`,
      ...update,
    );
    return 'written';
  });
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
  /** The stamp of the write that won the iterations field (the one that dropped ours), as that device wrote it. */
  winningAt: string;
  /** The mission's `spaceId` and `objective` as the projection has them (for the row's space and actor). */
  spaceId: unknown;
  objective: unknown;
  /** The mission's `agentId` as the projection has it: the repair is written as that agent. */
  agentId: unknown;
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
           split_part(s.versions ->> 'iterations', chr(1), 1) AS "winningAt",
           s.fields -> 'spaceId' AS "spaceId", s.fields -> 'objective' AS objective, s.fields -> 'agentId' AS "agentId"
    FROM mana_ai.occurrences o
    JOIN mana_ai.mission_snapshots s ON s.user_id = o.user_id AND s.mission_id = o.mission_id
    WHERE o.status IN ('planned', 'failed') AND o.written_at IS NOT NULL
      AND o.updated_at > now() - interval '1 day'
      AND s.present AND NOT s.soft_deleted
      -- The stamp of the write that won iterations (projection/stamp.ts: a plain one before U+0001),
      -- compared as the webapp compares it with ours (toISOString of written_at).
      AND left(s.versions ->> 'iterations', 1) <> chr(65535)
      AND split_part(s.versions ->> 'iterations', chr(1), 1) COLLATE "C" >= left(o.written_at, 23) || 'Z'
      AND NOT coalesce((s.fields -> 'iterations') @> jsonb_build_array(jsonb_build_object('id', o.iteration_id::text)), false)
    LIMIT ${limit}`;
}

/** Writes a dropped iteration again, merged into the freshest iterations; CAS on written_at so one instance does it. */
export async function rewriteDropped(sql: Sql, target: WriteTarget, d: DroppedWrite, now: Date, principal?: WritePrincipal): Promise<boolean> {
  // Stamped after the winning write: a device whose clock runs ahead stamps
  // its write in the future, and a repair stamped "now" would lose LWW again
  // and be rewritten on every pass until our clock caught up.
  const winning = instantMs(d.winningAt);
  const at = new Date(Math.max(now.getTime(), Number.isFinite(winning) ? winning + 1 : 0));
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
      data: { iterations: mergeIterations(d.iterations, [d.plan]) },
      at,
      actor: aiActor({ principal, missionId: d.missionId, iterationId: d.iterationId, objective: d.objective }),
      spaceId: spaceOf({ spaceId: d.spaceId }),
    });
    return true;
  })) as boolean;
}
