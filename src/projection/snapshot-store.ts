/**
 * Queries for the snapshot tables (mana_ai.mission_snapshots,
 * mana_ai.agent_snapshots: one shape, tables.ts): loading view states for
 * merging and writing them back in bulk. The only module that touches
 * their merge columns; mergeDeltas (merge-deltas.ts) is the other writer.
 */
import type { Sql, TxSql } from '../db/pool.js';
import { ABSENT, DERIVED_FIELDS, derivedOf, type DerivedColumns } from './due-rule.js';
import { isPresent, type FieldVersion, type RecordState } from './lww.js';
import { MISSIONS, projectedTable, type ProjectedTable } from './tables.js';
import { MISSION_AGENT_STATUS_SQL } from './agent-status.js';
import { viewKey } from './views.js';

/** The key of a mission's view in the scheduler's maps: user, mission. */
export const keyOf = (userId: string, recordId: string): string => `${userId}\u0000${recordId}`;

interface SnapshotRow {
  userId: string;
  recordId: string;
  /** Only the fields the derived columns need (DERIVED_FIELDS); the others stay in the table. */
  fields: Record<string, unknown>;
  versions: Record<string, string>;
  lastDelete: string | null;
  maxPos: string | null;
  firstPos: string | null;
  firstUser: string | null;
  earlySoftDelete: string | null;
  plain: boolean;
}

/** What a state looked like when it was loaded: saveStates then sends only the fields that changed. */
interface Loaded {
  lastDelete: string | null;
  present: boolean;
  versions: Map<string, string>;
}
const loadedAs = new WeakMap<RecordState, Loaded>();

/** Those fields of s.fields as one object, keys absent when absent (JSON nulls kept). */
const DERIVED_FIELDS_SQL = DERIVED_FIELDS.map((k) => `CASE WHEN s.fields ? '${k}' THEN jsonb_build_object('${k}', s.fields -> '${k}') ELSE '{}'::jsonb END`).join(' || ');

/**
 * Stands for a stored value that was not loaded: merging needs only the
 * versions, and a loaded record is written back by merging its changed
 * fields into the stored ones, so these are never written (saveStates checks).
 */
const NOT_LOADED: unique symbol = Symbol('not loaded');

function toState(table: ProjectedTable, row: SnapshotRow): RecordState {
  const fields = new Map<string, FieldVersion>();
  const versions = new Map<string, string>();
  for (const [k, version] of Object.entries(row.versions)) {
    fields.set(k, { value: Object.hasOwn(row.fields, k) ? row.fields[k] : NOT_LOADED, version });
    versions.set(k, version);
  }
  const { userId, recordId, lastDelete, maxPos, firstPos, firstUser, earlySoftDelete, plain } = row;
  const state: RecordState = { tableName: table.tableName, userId, recordId, lastDelete, maxPos, firstPos, firstUser, earlySoftDelete, plain, fields };
  loadedAs.set(state, { lastDelete, present: firstPos !== null, versions });
  return state;
}

/** Sets an own property, even one named `__proto__` (a field name is the writer's choice). */
export function setOwn(o: Record<string, unknown>, k: string, value: unknown): void {
  Object.defineProperty(o, k, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * The fields to write: all of them (replace) for a new or reset record, else
 * only those whose version changed since the load (merged into the stored ones).
 */
function changedFields(s: RecordState): { merge: boolean; keys: Iterable<string> } {
  const loaded = loadedAs.get(s);
  if (!loaded || loaded.lastDelete !== s.lastDelete || loaded.present !== isPresent(s)) return { merge: false, keys: s.fields.keys() };
  for (const k of loaded.versions.keys()) if (!s.fields.has(k)) return { merge: false, keys: s.fields.keys() };
  const keys: string[] = [];
  for (const [k, v] of s.fields) if (loaded.versions.get(k) !== v.version) keys.push(k);
  return { merge: true, keys };
}

/** Groups items by the projected table they belong to. */
export function byTable<T>(items: T[], tableOf: (item: T) => string): Map<ProjectedTable, T[]> {
  const out = new Map<ProjectedTable, T[]>();
  for (const item of items) {
    const t = projectedTable(tableOf(item));
    const list = out.get(t);
    if (list) list.push(item);
    else out.set(t, [item]);
  }
  return out;
}

/**
 * Loads the stored states of the given views (missing ones are simply
 * absent), keyed by viewKey: versions and the derived fields' values, not
 * the other values (about half the bytes of a pass that touches 1,000 records).
 */
export async function loadStates(tx: Sql | TxSql, keys: { tableName: string; userId: string; recordId: string }[]): Promise<Map<string, RecordState>> {
  const out = new Map<string, RecordState>();
  for (const [table, list] of byTable(keys, (k) => k.tableName)) {
    const rows = await tx<SnapshotRow[]>`
      SELECT s.user_id AS "userId", s.${tx.unsafe(table.idColumn)} AS "recordId",
             ${tx.unsafe(DERIVED_FIELDS_SQL)} AS fields, s.versions,
             s.last_delete AS "lastDelete", s.max_pos AS "maxPos", s.first_pos AS "firstPos",
             s.first_user AS "firstUser", s.early_soft_delete AS "earlySoftDelete", s.plain
      -- LATERAL: one primary-key lookup per record. As a join, Postgres merged the keys
      -- with a scan of the whole key index instead (~2.5x slower at 1,000 of 10,000 records).
      FROM unnest(${list.map((k) => k.userId)}::text[], ${list.map((k) => k.recordId)}::text[]) AS k(user_id, record_id)
      CROSS JOIN LATERAL (
        SELECT * FROM ${tx.unsafe(table.snapshots)} s WHERE s.user_id = k.user_id AND s.${tx.unsafe(table.idColumn)} = k.record_id) s`;
    for (const row of rows) out.set(viewKey(table.tableName, row.userId, row.recordId), toState(table, row));
  }
  return out;
}

/** True when no snapshot of either table is stored yet (a cold start): there is nothing to load. */
export async function snapshotsEmpty(tx: TxSql): Promise<boolean> {
  const [row] = await tx<{ empty: boolean }[]>`
    SELECT NOT EXISTS (SELECT 1 FROM mana_ai.mission_snapshots) AND NOT EXISTS (SELECT 1 FROM mana_ai.agent_snapshots) AS empty`;
  return Boolean(row?.empty);
}

/** The derived columns of a state (due-rule.ts), read off the few fields they come from. */
export function derivedColumns(s: RecordState): DerivedColumns {
  if (!isPresent(s)) return ABSENT;
  return derivedOf((k) => s.fields.get(k)?.value, s.firstUser);
}

const RECORDSET = `(user_id text, record_id text, fields jsonb, versions jsonb, last_delete text, max_pos text, first_pos text,
  first_user text, early_soft_delete text, plain boolean, present boolean, soft_deleted boolean, state text,
  next_run_at timestamptz, listed boolean, author text, space_id text)`;

const COLUMNS = `last_delete, max_pos, first_pos, first_user, early_soft_delete, plain, present, soft_deleted, state, next_run_at, listed, author, space_id`;
const SET_COLUMNS = COLUMNS.split(', ').map((c) => `${c} = x.${c}`).join(', ');

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
  for (const [table, all] of byTable(states, (s) => s.tableName)) {
    const snapshots = tx.unsafe(table.snapshots);
    const id = tx.unsafe(table.idColumn);
    for (let i = 0; i < all.length; i += CHUNK) {
      const whole: object[] = [];
      const merged: object[] = [];
      for (const s of all.slice(i, i + CHUNK)) {
        const { merge, keys } = changedFields(s);
        const fields: Record<string, unknown> = {};
        const versions: Record<string, string> = {};
        for (const k of keys) {
          const v = s.fields.get(k)!;
          if (v.value === NOT_LOADED) throw new Error(`snapshot of ${s.recordId}: field "${k}" would be written without its stored value`);
          setOwn(fields, k, v.value);
          setOwn(versions, k, v.version);
        }
        const { lastDelete, maxPos, firstPos, firstUser, earlySoftDelete, plain } = s;
        (merge ? merged : whole).push({
          user_id: s.userId,
          record_id: s.recordId,
          fields,
          versions,
          last_delete: lastDelete,
          max_pos: maxPos,
          first_pos: firstPos,
          first_user: firstUser,
          early_soft_delete: earlySoftDelete,
          plain,
          present: isPresent(s),
          ...derivedColumns(s),
        });
      }
      if (whole.length > 0) {
        const json = JSON.stringify(whole);
        bytes += json.length;
        records += whole.length;
        // A mission takes its agent's status as it is written (agent-status.ts), so the pass's
        // check of agent statuses rewrites none of the rows it just wrote.
        const mission = table === MISSIONS;
        const status = mission ? `, ${MISSION_AGENT_STATUS_SQL}` : '';
        const statusColumn = mission ? ', agent_status' : '';
        const statusSet = mission ? ', agent_status = excluded.agent_status' : '';
        await tx`
          INSERT INTO ${snapshots} (user_id, ${id}, fields, versions, ${tx.unsafe(COLUMNS)}, updated_at${tx.unsafe(statusColumn)})
          SELECT s.user_id, s.record_id, s.fields, s.versions, ${tx.unsafe(COLUMNS)}, now()${tx.unsafe(status)}
          FROM jsonb_to_recordset(${json}::text::jsonb) AS s${tx.unsafe(RECORDSET)}
          ON CONFLICT (user_id, ${id}) DO UPDATE SET
            fields = excluded.fields, versions = excluded.versions,
            ${tx.unsafe(COLUMNS.split(', ').map((c) => `${c} = excluded.${c}`).join(', '))}, updated_at = now()${tx.unsafe(statusSet)}`;
      }
      if (merged.length > 0) {
        // Loaded in this transaction, so stored; an unchanged jsonb is assigned as stored,
        // which keeps its TOAST pointer (no recompression).
        await tx`
          UPDATE ${snapshots} s SET
            fields = CASE WHEN x.fields = '{}'::jsonb THEN s.fields ELSE s.fields || x.fields END,
            versions = CASE WHEN x.versions = '{}'::jsonb THEN s.versions ELSE s.versions || x.versions END,
            ${tx.unsafe(SET_COLUMNS)}, updated_at = now()
          FROM jsonb_to_recordset(${JSON.stringify(merged)}::text::jsonb) AS x${tx.unsafe(RECORDSET)}
          WHERE s.user_id = x.user_id AND s.${id} = x.record_id`;
      }
    }
  }
  return { bytes, records };
}
