/**
 * Test helpers for the projection against a real database: write rows into
 * sync_changes (explicitly, or as a writer transaction the way mana-sync
 * does), read the log back as ChangeRows, read the snapshots as records.
 */
import postgres from 'postgres';
import type { Sql } from '../../src/db/pool.js';
import type { ChangeRow } from '../../src/projection/lww.js';

const TS = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

/**
 * A maker of rows of mission m1 of user u1 with ids counting up from 1;
 * `defaults(n)` (n = the row's number), then the caller's fields, override.
 */
export function rowMaker(defaults: (n: number) => Partial<ChangeRow>): (p?: Partial<ChangeRow>) => ChangeRow {
  let n = 0;
  return (p = {}) => {
    n++;
    return {
      id: `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`,
      userId: 'u1',
      recordId: 'm1',
      op: 'update',
      data: { title: 'x' },
      fieldMeta: {},
      fieldTimestamps: {},
      createdAt: '2025-01-09T23:58:27.000000Z',
      ...defaults(n),
      ...p,
    };
  };
}

/** Inserts rows with their explicit id, created_at and metadata, in one transaction. */
export async function insertRows(sql: Sql, rows: ChangeRow[], opts: { appId?: string; tableName?: string } = {}): Promise<void> {
  if (rows.length === 0) return;
  await sql.begin(async (tx) => {
    // tx.json: a JSON text passed to a jsonb parameter would be stored as a jsonb string.
    const json = (v: unknown) => (v === null || v === undefined ? null : tx.json(v as postgres.JSONValue));
    for (const r of rows) {
      // created_at goes as text: postgres.js turns a string bound to timestamptz into a Date (milliseconds).
      await tx`
        INSERT INTO sync_changes (id, app_id, table_name, record_id, user_id, op, data, field_meta, field_timestamps, client_id, created_at)
        VALUES (${r.id}::uuid, ${opts.appId ?? 'ai'}, ${opts.tableName ?? 'aiMissions'}, ${r.recordId}, ${r.userId}, ${String(r.op)},
                ${json(r.data)}, ${json(r.fieldMeta)}, ${json(r.fieldTimestamps)}, 'test', ${r.createdAt}::text::timestamptz)`;
    }
  });
}

/** Every aiMissions row of the log, as the projection would read it. */
export async function readLog(sql: Sql): Promise<ChangeRow[]> {
  return sql<ChangeRow[]>`
    SELECT id::text AS id, user_id AS "userId", record_id AS "recordId", op, data,
           field_timestamps AS "fieldTimestamps", field_meta AS "fieldMeta",
           to_char(created_at AT TIME ZONE 'UTC', ${sql.unsafe(TS)}) AS "createdAt"
    FROM sync_changes WHERE app_id = 'ai' AND table_name = 'aiMissions'`;
}

/** Present snapshots as `{ id, ...fields }`, keyed "user\0mission" like oracleReplay. */
export async function readRecords(sql: Sql): Promise<Map<string, Record<string, unknown>>> {
  const rows = await sql<{ userId: string; missionId: string; record: Record<string, unknown> }[]>`
    SELECT user_id AS "userId", mission_id AS "missionId", jsonb_build_object('id', mission_id) || fields AS record
    FROM mana_ai.mission_snapshots WHERE present`;
  return new Map(rows.map((r) => [`${r.userId}\u0000${r.missionId}`, r.record]));
}

export async function readCursor(sql: Sql): Promise<{ horizon: string; applied: string[] } | undefined> {
  const [row] = await sql<{ horizon: string; applied: string[] }[]>`
    SELECT horizon, applied FROM mana_ai.projection_cursor WHERE name = 'aiMissions'`;
  return row;
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
        VALUES ('ai', 'aiMissions', ${row.recordId}, ${userId}, ${row.op},
                ${row.data === null ? null : c.json(row.data as postgres.JSONValue)}, ${c.json((row.fieldMeta ?? {}) as postgres.JSONValue)}, 'writer')
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
