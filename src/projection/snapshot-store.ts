/**
 * Queries for mana_ai.mission_snapshots: loading record states for merging
 * and writing them back in bulk. The only module that touches that table's
 * merge columns.
 */
import type { TxSql } from '../db/pool.js';
import { parseInstant } from './instant.js';
import { materialize, type RecordState, type FieldVersion } from './lww.js';

export const keyOf = (userId: string, recordId: string): string => `${userId}\u0000${recordId}`;

interface SnapshotRow {
  userId: string;
  missionId: string;
  fields: Record<string, unknown>;
  versions: Record<string, string>;
  lastDelete: string | null;
  maxPos: string | null;
  present: boolean;
}

function toState(row: SnapshotRow): RecordState {
  const fields = new Map<string, FieldVersion>();
  for (const [k, stamp] of Object.entries(row.versions)) fields.set(k, { value: row.fields[k], stamp });
  return { userId: row.userId, recordId: row.missionId, lastDelete: row.lastDelete, maxPos: row.maxPos, present: row.present, fields };
}

/** Loads the stored states of the given records (missing ones are simply absent). */
export async function loadStates(tx: TxSql, keys: { userId: string; recordId: string }[]): Promise<Map<string, RecordState>> {
  const out = new Map<string, RecordState>();
  if (keys.length === 0) return out;
  const rows = await tx<SnapshotRow[]>`
    SELECT s.user_id AS "userId", s.mission_id AS "missionId", s.fields, s.versions,
           s.last_delete AS "lastDelete", s.max_pos AS "maxPos", s.present
    FROM mana_ai.mission_snapshots s
    JOIN unnest(${keys.map((k) => k.userId)}::text[], ${keys.map((k) => k.recordId)}::text[]) AS k(user_id, mission_id)
      ON s.user_id = k.user_id AND s.mission_id = k.mission_id`;
  for (const row of rows) out.set(keyOf(row.userId, row.missionId), toState(row));
  return out;
}

/** True when no snapshot is stored yet (a cold start): there is nothing to load. */
export async function snapshotsEmpty(tx: TxSql): Promise<boolean> {
  const [row] = await tx<{ empty: boolean }[]>`SELECT NOT EXISTS (SELECT 1 FROM mana_ai.mission_snapshots) AS empty`;
  return Boolean(row?.empty);
}

/**
 * Upserts states, with the derived columns the due scan indexes. Returns the
 * size of the JSON sent, which sizes the refresh's record cache.
 */
export async function saveStates(tx: TxSql, states: RecordState[]): Promise<number> {
  const CHUNK = 2000;
  let bytes = 0;
  for (let i = 0; i < states.length; i += CHUNK) {
    const rows = states.slice(i, i + CHUNK).map((s) => {
      const record = materialize(s);
      const fields: Record<string, unknown> = {};
      const versions: Record<string, string> = {};
      for (const [k, v] of s.fields) {
        Object.defineProperty(fields, k, { value: v.value, enumerable: true, writable: true, configurable: true });
        Object.defineProperty(versions, k, { value: v.stamp, enumerable: true, writable: true, configurable: true });
      }
      const state = record && typeof record['state'] === 'string' ? record['state'] : null;
      return {
        user_id: s.userId,
        mission_id: s.recordId,
        fields,
        versions,
        last_delete: s.lastDelete,
        max_pos: s.maxPos,
        present: s.present,
        soft_deleted: record ? Boolean(record['deletedAt']) : false,
        state,
        next_run_at: record ? parseInstant(record['nextRunAt']) : null,
      };
    });
    const json = JSON.stringify(rows);
    bytes += json.length;
    await tx`
      INSERT INTO mana_ai.mission_snapshots
        (user_id, mission_id, fields, versions, last_delete, max_pos, present, soft_deleted, state, next_run_at, updated_at)
      SELECT user_id, mission_id, fields, versions, last_delete, max_pos, present, soft_deleted, state, next_run_at, now()
      FROM jsonb_to_recordset(${json}::text::jsonb) AS x(
        user_id text, mission_id text, fields jsonb, versions jsonb, last_delete text, max_pos text,
        present boolean, soft_deleted boolean, state text, next_run_at timestamptz)
      ON CONFLICT (user_id, mission_id) DO UPDATE SET
        fields = excluded.fields, versions = excluded.versions, last_delete = excluded.last_delete,
        max_pos = excluded.max_pos, present = excluded.present, soft_deleted = excluded.soft_deleted,
        state = excluded.state, next_run_at = excluded.next_run_at, updated_at = now()`;
  }
  return bytes;
}
