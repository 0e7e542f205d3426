/**
 * Queries for mana_ai.mission_snapshots: loading record states for merging
 * and writing them back in bulk. The only module that touches that table's
 * merge columns.
 */
import type { Sql, TxSql } from '../db/pool.js';
import { parseInstant } from './instant.js';
import type { RecordState, FieldVersion } from './lww.js';

export const keyOf = (userId: string, recordId: string): string => `${userId}\u0000${recordId}`;
export const splitKey = (key: string): { userId: string; missionId: string } => {
  const at = key.indexOf('\u0000');
  return { userId: key.slice(0, at), missionId: key.slice(at + 1) };
};

interface SnapshotRow {
  userId: string;
  missionId: string;
  /** Only the fields the derived columns need (DERIVED); the others stay in the table. */
  fields: Record<string, unknown>;
  versions: Record<string, string>;
  lastDelete: string | null;
  maxPos: string | null;
  present: boolean;
}

/** What a state looked like when it was loaded: saveStates then sends only the fields that changed. */
interface Loaded {
  lastDelete: string | null;
  present: boolean;
  stamps: Map<string, string>;
}
const loadedAs = new WeakMap<RecordState, Loaded>();

/** The fields saveStates reads to derive the columns the due scan indexes. */
const DERIVED = ['state', 'nextRunAt', 'deletedAt'] as const;
/** Those fields of s.fields as one object, keys absent when absent (JSON nulls kept). */
const DERIVED_FIELDS_SQL = DERIVED.map((k) => `CASE WHEN s.fields ? '${k}' THEN jsonb_build_object('${k}', s.fields -> '${k}') ELSE '{}'::jsonb END`).join(' || ');

/**
 * Stands for a stored value that was not loaded: merging needs only the
 * versions, and a loaded record is written back by merging its changed
 * fields into the stored ones, so these are never written (saveStates checks).
 */
const NOT_LOADED: unique symbol = Symbol('not loaded');

function toState(row: SnapshotRow): RecordState {
  const fields = new Map<string, FieldVersion>();
  const stamps = new Map<string, string>();
  for (const [k, stamp] of Object.entries(row.versions)) {
    fields.set(k, { value: Object.hasOwn(row.fields, k) ? row.fields[k] : NOT_LOADED, stamp });
    stamps.set(k, stamp);
  }
  const state: RecordState = { userId: row.userId, recordId: row.missionId, lastDelete: row.lastDelete, maxPos: row.maxPos, present: row.present, fields };
  loadedAs.set(state, { lastDelete: row.lastDelete, present: row.present, stamps });
  return state;
}

/** Sets an own property, even one named `__proto__` (a field name is the writer's choice). */
function setOwn(o: Record<string, unknown>, k: string, value: unknown): void {
  Object.defineProperty(o, k, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * The fields to write: all of them (replace) for a new or reset record, else
 * only those whose version changed since the load (merged into the stored ones).
 */
function changedFields(s: RecordState): { merge: boolean; keys: Iterable<string> } {
  const loaded = loadedAs.get(s);
  if (!loaded || loaded.lastDelete !== s.lastDelete || loaded.present !== s.present) return { merge: false, keys: s.fields.keys() };
  for (const k of loaded.stamps.keys()) if (!s.fields.has(k)) return { merge: false, keys: s.fields.keys() };
  const keys: string[] = [];
  for (const [k, v] of s.fields) if (loaded.stamps.get(k) !== v.stamp) keys.push(k);
  return { merge: true, keys };
}

/**
 * Loads the stored states of the given records (missing ones are simply
 * absent): versions and the derived fields' values, not the other values
 * (about half the bytes of a pass that touches 1,000 records).
 */
export async function loadStates(tx: Sql | TxSql, keys: { userId: string; recordId: string }[]): Promise<Map<string, RecordState>> {
  const out = new Map<string, RecordState>();
  if (keys.length === 0) return out;
  const rows = await tx<SnapshotRow[]>`
    SELECT s.user_id AS "userId", s.mission_id AS "missionId",
           ${tx.unsafe(DERIVED_FIELDS_SQL)} AS fields,
           s.versions,
           s.last_delete AS "lastDelete", s.max_pos AS "maxPos", s.present
    -- LATERAL: one primary-key lookup per record. As a join, Postgres merged the keys
    -- with a scan of the whole key index instead (~2.5x slower at 1,000 of 10,000 records).
    FROM unnest(${keys.map((k) => k.userId)}::text[], ${keys.map((k) => k.recordId)}::text[]) AS k(user_id, mission_id)
    CROSS JOIN LATERAL (
      SELECT * FROM mana_ai.mission_snapshots s WHERE s.user_id = k.user_id AND s.mission_id = k.mission_id) s`;
  for (const row of rows) out.set(keyOf(row.userId, row.missionId), toState(row));
  return out;
}

/** True when no snapshot is stored yet (a cold start): there is nothing to load. */
export async function snapshotsEmpty(tx: TxSql): Promise<boolean> {
  const [row] = await tx<{ empty: boolean }[]>`SELECT NOT EXISTS (SELECT 1 FROM mana_ai.mission_snapshots) AS empty`;
  return Boolean(row?.empty);
}

/**
 * The columns the due scan indexes, read off the three fields they come from
 * (materialize() would build the whole record for each state written).
 */
function derivedColumns(s: RecordState): { soft_deleted: boolean; state: string | null; next_run_at: string | null } {
  if (!s.present) return { soft_deleted: false, state: null, next_run_at: null };
  const value = (k: (typeof DERIVED)[number]) => s.fields.get(k)?.value;
  const state = value('state');
  return { soft_deleted: Boolean(value('deletedAt')), state: typeof state === 'string' ? state : null, next_run_at: parseInstant(value('nextRunAt')) };
}

const RECORDSET = `x(user_id text, mission_id text, fields jsonb, versions jsonb, last_delete text, max_pos text,
  present boolean, soft_deleted boolean, state text, next_run_at timestamptz)`;

/**
 * Upserts states, with the derived columns the due scan indexes. A record
 * loaded by loadStates sends only its changed fields, merged into the stored
 * ones (a 1,000-row pass writes a fraction of the JSON). Returns the size of
 * the JSON of the records written whole, which sizes the refresh's cache.
 */
export async function saveStates(tx: TxSql, states: RecordState[]): Promise<{ bytes: number; records: number }> {
  const CHUNK = 2000;
  let bytes = 0;
  let records = 0;
  for (let i = 0; i < states.length; i += CHUNK) {
    const whole: object[] = [];
    const merged: object[] = [];
    for (const s of states.slice(i, i + CHUNK)) {
      const { merge, keys } = changedFields(s);
      const fields: Record<string, unknown> = {};
      const versions: Record<string, string> = {};
      for (const k of keys) {
        const v = s.fields.get(k)!;
        if (v.value === NOT_LOADED) throw new Error(`snapshot of ${s.recordId}: field "${k}" would be written without its stored value`);
        setOwn(fields, k, v.value);
        setOwn(versions, k, v.stamp);
      }
      (merge ? merged : whole).push({
        user_id: s.userId,
        mission_id: s.recordId,
        fields,
        versions,
        last_delete: s.lastDelete,
        max_pos: s.maxPos,
        present: s.present,
        ...derivedColumns(s),
      });
    }
    if (whole.length > 0) {
      const json = JSON.stringify(whole);
      bytes += json.length;
      records += whole.length;
      await tx`
        INSERT INTO mana_ai.mission_snapshots
          (user_id, mission_id, fields, versions, last_delete, max_pos, present, soft_deleted, state, next_run_at, updated_at)
        SELECT user_id, mission_id, fields, versions, last_delete, max_pos, present, soft_deleted, state, next_run_at, now()
        FROM jsonb_to_recordset(${json}::text::jsonb) AS ${tx.unsafe(RECORDSET)}
        ON CONFLICT (user_id, mission_id) DO UPDATE SET
          fields = excluded.fields, versions = excluded.versions, last_delete = excluded.last_delete,
          max_pos = excluded.max_pos, present = excluded.present, soft_deleted = excluded.soft_deleted,
          state = excluded.state, next_run_at = excluded.next_run_at, updated_at = now()`;
    }
    if (merged.length > 0) {
      // Loaded in this transaction, so stored; an unchanged jsonb is assigned as stored,
      // which keeps its TOAST pointer (no recompression).
      await tx`
        UPDATE mana_ai.mission_snapshots s SET
          fields = CASE WHEN x.fields = '{}'::jsonb THEN s.fields ELSE s.fields || x.fields END,
          versions = CASE WHEN x.versions = '{}'::jsonb THEN s.versions ELSE s.versions || x.versions END,
          last_delete = x.last_delete, max_pos = x.max_pos, present = x.present,
          soft_deleted = x.soft_deleted, state = x.state, next_run_at = x.next_run_at, updated_at = now()
        FROM jsonb_to_recordset(${JSON.stringify(merged)}::text::jsonb) AS ${tx.unsafe(RECORDSET)}
        WHERE s.user_id = x.user_id AND s.mission_id = x.mission_id`;
    }
  }
  return { bytes, records };
}

/** One record's rows of one pass merged from nothing (lww.ts), none of them a delete. */
export interface Delta {
  state: RecordState;
  /** The earliest of those rows' positions. */
  minPos: string;
}

/**
 * A delta as mergeDeltas sends it, in few bytes (the JSON is most of a
 * pass's write-back, and Postgres parses it all): short keys, one stamp `t`
 * for all fields when they share it (almost always: one row), `v` only when
 * they do not, `lo` only when it differs from `hi`, derived columns only for
 * fields the delta has.
 */
const DELTASET = `x(u text, m text, f jsonb, t text, v jsonb, lo text, hi text, st text, sd boolean, nr timestamptz)`;

/** The stamp x carries for field k. */
const stampOf = (k: string) => `coalesce(x.v ->> ${k}, x.t)`;
/** True when x's field k wins over s's (text compared as bytes, as JavaScript compares these ASCII stamps). */
const wins = (k: string) => `(x.f ? '${k}' AND ${stampOf(`'${k}'`)} COLLATE "C" >= coalesce(s.versions ->> '${k}', ''))`;

/**
 * Merges deltas into the stored snapshots in the database, field by field,
 * without loading them: what lww.ts's applyChange does for rows that are
 * not deletes, given that every row is after the record's last delete.
 * Returns the keys of the records merged; the others (not stored yet, or
 * with a row at or before their last delete) are for the caller to load and
 * merge itself.
 */
export async function mergeDeltas(tx: Sql | TxSql, deltas: Delta[]): Promise<{ merged: Set<string> }> {
  const merged = new Set<string>();
  if (deltas.length === 0) return { merged };
  const json = JSON.stringify(
    deltas.map(({ state: s, minPos }) => {
      const f: Record<string, unknown> = {};
      const v: Record<string, string> = {};
      let t: string | undefined;
      let shared = true;
      for (const [k, fv] of s.fields) {
        setOwn(f, k, fv.value);
        setOwn(v, k, fv.stamp);
        t ??= fv.stamp;
        if (fv.stamp !== t) shared = false;
      }
      const d = derivedColumns(s);
      return {
        u: s.userId,
        m: s.recordId,
        f,
        t,
        v: shared ? undefined : v,
        lo: minPos === s.maxPos ? undefined : minPos,
        hi: s.maxPos,
        st: s.fields.has('state') ? d.state : undefined,
        sd: s.fields.has('deletedAt') ? d.soft_deleted : undefined,
        nr: s.fields.has('nextRunAt') ? d.next_run_at : undefined,
      };
    }),
  );
  const rows = await tx<{ userId: string; missionId: string }[]>`
    UPDATE mana_ai.mission_snapshots s SET
      (fields, versions) = (
        SELECT s.fields || coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb),
               s.versions || coalesce(jsonb_object_agg(e.key, ${tx.unsafe(stampOf('e.key'))}), '{}'::jsonb)
        FROM jsonb_each(x.f) e
        WHERE ${tx.unsafe(stampOf('e.key'))} COLLATE "C" >= coalesce(s.versions ->> e.key, '')),
      max_pos = CASE WHEN s.max_pos IS NULL OR x.hi COLLATE "C" > s.max_pos THEN x.hi ELSE s.max_pos END,
      present = true,
      -- The derived columns change only with the field they come from (a deleted record has none).
      state = CASE WHEN ${tx.unsafe(wins('state'))} THEN x.st ELSE s.state END,
      soft_deleted = CASE WHEN ${tx.unsafe(wins('deletedAt'))} THEN x.sd ELSE s.soft_deleted END,
      next_run_at = CASE WHEN ${tx.unsafe(wins('nextRunAt'))} THEN x.nr ELSE s.next_run_at END,
      updated_at = now()
    FROM jsonb_to_recordset(${json}::text::jsonb) AS ${tx.unsafe(DELTASET)}
    WHERE s.user_id = x.u AND s.mission_id = x.m
      AND (s.last_delete IS NULL OR coalesce(x.lo, x.hi) COLLATE "C" > s.last_delete)
    RETURNING s.user_id AS "userId", s.mission_id AS "missionId"`;
  for (const r of rows) merged.add(keyOf(r.userId, r.missionId));
  return { merged };
}
