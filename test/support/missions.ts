/**
 * The one way the suites put missions into the change log: as mana-sync
 * writes them, an `insert` row with the whole record (or an `update` row with
 * some fields), straight into `sync_changes`. The test login is a superuser,
 * so RLS does not stand in the way. Large batches go in chunks of a few
 * thousand rows per statement.
 */
import type { Sql } from '../../src/db/pool.js';

export interface MissionSeed {
  userId: string;
  missionId: string;
  /** ISO instant it falls due; null for no next run. */
  nextRunAt: string | null;
  title?: string;
  objective?: string;
  conceptMarkdown?: string;
  /** Default: daily at 09:00 UTC, so a plan moves nextRunAt to a later day and the mission is due once. */
  cadence?: Record<string, unknown>;
  state?: 'active' | 'paused' | 'done' | 'archived';
  iterations?: unknown[];
  inputs?: unknown[];
  /** Any further fields of the record. */
  extra?: Record<string, unknown>;
}

/** A plannable mission record (docs/contract.md §2) with the seed's fields. */
export function missionRecord(m: MissionSeed): Record<string, unknown> {
  const day = new Date(Date.now() - 86_400_000).toISOString();
  return {
    id: m.missionId,
    createdAt: day,
    updatedAt: day,
    title: m.title ?? `Mission ${m.missionId}`,
    objective: m.objective ?? 'Make visible progress this week',
    conceptMarkdown: m.conceptMarkdown ?? 'One small step per run.',
    inputs: m.inputs ?? [],
    cadence: m.cadence ?? { kind: 'daily', atHour: 9, atMinute: 0 },
    state: m.state ?? 'active',
    iterations: m.iterations ?? [],
    ...(m.nextRunAt === null ? {} : { nextRunAt: m.nextRunAt }),
    ...m.extra,
  };
}

export interface RawRecordRow {
  userId: string;
  recordId: string;
  /** The row's data, as a device sent it (any JSON). */
  data: unknown;
}

export interface SeedOptions {
  /** The writer's client id (default 'test'). */
  clientId?: string;
  /** The `origin` column (default 'user'; null leaves it empty). */
  origin?: string | null;
  op?: 'insert' | 'update';
}

const CHUNK = 2000;

/** Writes rows of app `ai`, table `aiMissions` as they are: the seeder the others build on. */
export async function seedRecords(sql: Sql, rows: RawRecordRow[], opts: SeedOptions = {}): Promise<void> {
  const clientId = opts.clientId ?? 'test';
  const origin = opts.origin === undefined ? 'user' : opts.origin;
  const op = opts.op ?? 'insert';
  // An update carries each field's stamp, as mana-sync stores a device's update: now, as toISOString() writes it.
  const at = op === 'update' ? new Date().toISOString() : null;
  for (let i = 0; i < rows.length; i += CHUNK) {
    const chunk = rows.slice(i, i + CHUNK).map((r) => ({ u: r.userId, r: r.recordId, d: r.data }));
    await sql`
      INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, field_meta, client_id, origin)
      SELECT 'ai', 'aiMissions', r, u, ${op}, d,
             CASE WHEN ${at}::text IS NOT NULL AND jsonb_typeof(d) = 'object'
                  THEN coalesce((SELECT jsonb_object_agg(k, ${at}::text) FROM jsonb_object_keys(d) k), '{}') ELSE '{}' END,
             ${clientId}, ${origin}
      FROM jsonb_to_recordset(${sql.json(chunk as never)}::jsonb) AS x(u text, r text, d jsonb)`;
  }
}

/** Writes missions as mana-sync `insert` rows, the whole record each. */
export async function seedMissions(sql: Sql, missions: MissionSeed[], opts: SeedOptions = {}): Promise<void> {
  await seedRecords(
    sql,
    missions.map((m) => ({ userId: m.userId, recordId: m.missionId, data: missionRecord(m) })),
    opts,
  );
}

/** Appends an update row with only the given fields, as a device editing the mission would. */
export async function updateMission(sql: Sql, userId: string, missionId: string, data: Record<string, unknown>, opts: Omit<SeedOptions, 'op'> = {}): Promise<void> {
  await seedRecords(sql, [{ userId, recordId: missionId, data }], { ...opts, op: 'update' });
}
