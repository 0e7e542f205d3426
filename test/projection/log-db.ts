/**
 * Test helpers for the projection against a real database: write rows into
 * sync_changes (explicitly, or as a writer transaction the way mana-sync
 * does), read the log back as the oracle's LogRows, read the snapshots as
 * views.
 */
import postgres from 'postgres';
import type { Sql } from '../../src/db/pool.js';
import { oracleViews, type LogRow, type ViewResult } from './oracle.js';

const TS = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

/**
 * A maker of rows of mission m1 of user u1 with ids counting up from 1;
 * `defaults(n)` (n = the row's number), then the caller's fields, override.
 */
export function rowMaker(defaults: (n: number) => Partial<LogRow>): (p?: Partial<LogRow>) => LogRow {
  let n = 0;
  return (p = {}) => {
    n++;
    return {
      id: `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`,
      tableName: 'aiMissions',
      userId: 'u1',
      recordId: 'm1',
      op: 'update',
      data: { title: 'x' },
      fieldMeta: {},
      fieldTimestamps: {},
      createdAt: '2025-01-09T23:58:27.000000Z',
      spaceId: null,
      actor: undefined,
      origin: null,
      schemaVersion: 1,
      ...defaults(n),
      ...p,
    };
  };
}

/** Inserts rows with every column as given (undefined: SQL NULL), in one transaction. */
export async function insertRows(sql: Sql, rows: LogRow[]): Promise<void> {
  if (rows.length === 0) return;
  await sql.begin(async (tx) => {
    // tx.json: a JSON text passed to a jsonb parameter would be stored as a jsonb string.
    const json = (v: unknown) => (v === undefined ? null : v === null ? tx.unsafe(`'null'::jsonb`) : tx.json(v as postgres.JSONValue));
    for (const r of rows) {
      // created_at goes as text: postgres.js turns a string bound to timestamptz into a Date (milliseconds).
      await tx`
        INSERT INTO sync_changes (id, app_id, table_name, record_id, user_id, op, data, field_meta, field_timestamps, client_id, created_at,
                                  space_id, actor, origin, schema_version)
        VALUES (${r.id}::uuid, 'ai', ${r.tableName}, ${r.recordId}, ${r.userId}, ${String(r.op)},
                ${r.data === null ? null : json(r.data)}, ${json(r.fieldMeta)}, ${json(r.fieldTimestamps)}, 'test', ${r.createdAt}::text::timestamptz,
                ${r.spaceId}, ${json(r.actor)}, ${r.origin}, ${r.schemaVersion})`;
    }
  });
}

interface RawRow extends Omit<LogRow, 'actor'> {
  /** [actor] when the column is not NULL. */
  actor: [unknown] | null;
}

/** Every row of the projected tables, as stored (the oracle's input). */
export async function readLog(sql: Sql): Promise<LogRow[]> {
  const rows = await sql<RawRow[]>`
    SELECT id::text AS id, table_name AS "tableName", user_id AS "userId", record_id AS "recordId", op, data,
           field_meta AS "fieldMeta", field_timestamps AS "fieldTimestamps",
           to_char(created_at AT TIME ZONE 'UTC', ${sql.unsafe(TS)}) AS "createdAt",
           space_id AS "spaceId", CASE WHEN actor IS NOT NULL THEN jsonb_build_array(actor) END AS actor, origin, schema_version AS "schemaVersion"
    FROM sync_changes WHERE app_id = 'ai' AND table_name IN ('aiMissions', 'agents')`;
  return rows.map((r) => ({ ...r, data: r.data ?? undefined, actor: r.actor === null ? undefined : r.actor[0] }));
}

/** Present views of both snapshot tables as `{ record, author }`, keyed as oracleViews keys them. */
export async function readViews(sql: Sql): Promise<Map<string, ViewResult>> {
  const rows = await sql<{ t: string; u: string; r: string; record: Record<string, unknown>; author: string }[]>`
    SELECT 'aiMissions' AS t, user_id AS u, mission_id AS r, jsonb_build_object('id', mission_id) || fields AS record, author
    FROM mana_ai.mission_snapshots WHERE present
    UNION ALL
    SELECT 'agents', user_id, agent_id, jsonb_build_object('id', agent_id) || fields, author
    FROM mana_ai.agent_snapshots WHERE present`;
  return new Map(rows.map((r) => [`${r.t}\u0000${r.u}\u0000${r.r}`, { record: r.record, author: r.author }]));
}

/** One view's record (`{ id, ...fields }`), or undefined when absent. */
export async function readRecord(sql: Sql, userId: string, recordId: string, tableName = 'aiMissions'): Promise<Record<string, unknown> | undefined> {
  return (await readViews(sql)).get(`${tableName}\u0000${userId}\u0000${recordId}`)?.record;
}

/** The snapshots equal what the devices hold (oracle.ts) of everything committed. */
export async function viewsMatchOracle(sql: Sql): Promise<{ actual: Map<string, ViewResult>; expected: Map<string, ViewResult> }> {
  return { actual: await readViews(sql), expected: oracleViews(await readLog(sql)) };
}

export async function readCursor(sql: Sql): Promise<{ horizon: string; applied: string[] } | undefined> {
  const [row] = await sql<{ horizon: string; applied: string[] }[]>`
    SELECT horizon, applied FROM mana_ai.projection_cursor WHERE name = 'ai'`;
  return row;
}

/** Empties the log and everything the projection keeps. */
export async function resetProjection(sql: Sql): Promise<void> {
  await sql`TRUNCATE sync_changes, mana_ai.mission_snapshots, mana_ai.agent_snapshots, mana_ai.record_spaces, mana_ai.projection_cursor`;
}

/**
 * A writer on its own connection, writing like mana-sync: one transaction,
 * app.current_user_id set, a plain role so RLS applies, id and created_at
 * left to their defaults (created_at = the transaction's start).
 */
export interface Writer {
  /** BEGIN; returns the transaction's start (= created_at of its rows), canonical. */
  begin(userId: string): Promise<string>;
  insert(row: { recordId: string; op: string; data: unknown; fieldMeta?: unknown }): Promise<{ id: string; createdAt: string }>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  close(): Promise<void>;
}

export async function openWriter(url: string): Promise<Writer> {
  const pool = postgres(url, { max: 1, onnotice: () => {} });
  const c = await pool.reserve();
  let userId = '';
  return {
    async begin(user) {
      userId = user;
      await c`BEGIN`;
      await c`SELECT set_config('app.current_user_id', ${user}, true)`;
      await c`SET LOCAL ROLE mana_ai_writer`;
      const [r] = await c<{ start: string }[]>`SELECT to_char(now() AT TIME ZONE 'UTC', ${c.unsafe(TS)}) AS start`;
      return r!.start;
    },
    async insert(row) {
      const [r] = await c<{ id: string; createdAt: string }[]>`
        INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id)
        SELECT 'ai', 'aiMissions', ${row.recordId}, ${userId}, ${row.op}, d.data,
               -- An update stamped as a device stamps it: each field at the write's time (the transaction's start here).
               coalesce(${row.fieldMeta === undefined ? null : c.json(row.fieldMeta as postgres.JSONValue)}::jsonb,
                        CASE WHEN ${row.op} = 'update' THEN (SELECT jsonb_object_agg(k, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                                                            FROM jsonb_object_keys(d.data) k) END, '{}'::jsonb),
               'writer'
        FROM (SELECT ${row.data === null ? null : c.json(row.data as postgres.JSONValue)}::jsonb AS data) d
        RETURNING id::text AS id, to_char(created_at AT TIME ZONE 'UTC', ${c.unsafe(TS)}) AS "createdAt"`;
      return r!;
    },
    async commit() {
      await c`COMMIT`;
    },
    async rollback() {
      await c`ROLLBACK`;
    },
    async close() {
      await c`ROLLBACK`.catch(() => undefined);
      c.release();
      await pool.end({ timeout: 5 });
    },
  };
}

/**
 * Stamps for a test's rows, a minute ahead of now: `at(sec)` the ISO stamp
 * a device writes, `c(sec)` the same instant as a created_at with microseconds.
 */
export function testClock(): { at: (sec: number) => string; c: (sec: number) => string } {
  const base = Date.now() + 60_000;
  const at = (sec: number) => new Date(base + sec * 1000).toISOString();
  return { at, c: (sec: number) => `${at(sec).slice(0, 23)}000Z` };
}
