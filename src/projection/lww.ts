/**
 * Field-level last-write-wins over sync_changes rows (docs/contract.md §1). The
 * rules live here; the one other place that applies them is mergeDeltas
 * (snapshot-store.ts), which merges rows that are not deletes in SQL, and
 * test/projection/merge-deltas.property.test.ts holds it to this file.
 *
 * The contract defines the record as a sequential replay in (created_at, id)
 * order, where a field wins when its timestamp is at least the stored one.
 * That equals, per field, the value of the row with the greatest
 * (timestamp, created_at, id) among the rows after the record's last delete.
 * Keeping that triple per field makes applying a row order-independent, so a
 * row that commits late (created_at earlier than rows already applied) merges
 * to the same result as a full replay. The one case that is not
 * order-independent, a delete arriving after rows that follow it, asks the
 * caller for a rebuild from the log.
 */
import { parseInstant } from './instant.js';

/** A raw row as read from sync_changes (created_at already canonical). */
export interface ChangeRow {
  id: string;
  userId: string;
  recordId: string;
  op: unknown;
  data: unknown;
  fieldTimestamps: unknown;
  fieldMeta: unknown;
  createdAt: string;
}

/** Replay position: created_at, then id; fixed-width so string order is replay order. */
export type Pos = string;

export type Change =
  | { kind: 'delete'; id: string; userId: string; recordId: string; pos: Pos }
  | { kind: 'data'; id: string; userId: string; recordId: string; pos: Pos; fields: [key: string, value: unknown, stamp: string][] };

export type Normalized = { ok: true; change: Change } | { ok: false; reason: string };

export interface FieldVersion {
  value: unknown;
  /** `${fieldInstant}|${pos}`: compared as one string. */
  stamp: string;
}

export interface RecordState {
  userId: string;
  recordId: string;
  lastDelete: Pos | null;
  maxPos: Pos | null;
  present: boolean;
  fields: Map<string, FieldVersion>;
}

export type ApplyResult = 'applied' | 'ignored' | 'rebuild';

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function posOf(createdAt: string, id: string): Pos {
  return `${createdAt}|${id}`;
}

/** The instant of one metadata entry: an ISO string or `{ at: ISO, … }`. */
function entryInstant(entry: unknown): string | null {
  if (typeof entry === 'string') return parseInstant(entry);
  if (isPlainObject(entry)) return parseInstant(entry['at']);
  return null;
}

/** Far deeper than any real record; the write-back's JSON.stringify recurses and throws near 5,000. */
export const MAX_DATA_DEPTH = 100;

/**
 * Why a data value cannot be stored as written, or null: a number beyond
 * the double range (JSON.parse reads it as Infinity, written back as null)
 * or nesting deeper than MAX_DATA_DEPTH (the write-back would throw on every
 * pass, so one such row would stall the projection for good).
 */
function unrepresentable(value: unknown, depth: number): string | null {
  if (typeof value === 'number') return Number.isFinite(value) ? null : 'a number beyond the double range';
  if (typeof value !== 'object' || value === null) return null;
  if (depth >= MAX_DATA_DEPTH) return `nested deeper than ${MAX_DATA_DEPTH} levels`;
  for (const v of Array.isArray(value) ? value : Object.values(value)) {
    const why = unrepresentable(v, depth + 1);
    if (why) return why;
  }
  return null;
}

/**
 * Longest user_id / record_id (UTF-8 bytes) the projection keeps. Real ids are
 * uuids; together both must fit one btree entry (2704 bytes) of the snapshot
 * and occurrence keys, or the write-back fails on every pass.
 */
export const MAX_ID_BYTES = 1024;

/**
 * Validates a row and resolves each field's timestamp (field_meta first,
 * then field_timestamps, then the row's created_at). Never throws.
 */
export function normalizeRow(row: ChangeRow): Normalized {
  const createdAt = parseInstant(row.createdAt);
  if (!createdAt) return { ok: false, reason: `created_at: expected an instant, got ${JSON.stringify(row.createdAt)}` };
  if (typeof row.id !== 'string' || typeof row.recordId !== 'string' || typeof row.userId !== 'string') {
    return { ok: false, reason: 'id, record_id and user_id: expected strings' };
  }
  for (const [name, value] of [['user_id', row.userId], ['record_id', row.recordId]] as const) {
    const bytes = Buffer.byteLength(value);
    if (bytes > MAX_ID_BYTES) return { ok: false, reason: `${name}: expected at most ${MAX_ID_BYTES} bytes, got ${bytes}` };
  }
  const pos = posOf(createdAt, row.id);
  const base = { id: row.id, userId: row.userId, recordId: row.recordId, pos };
  if (row.op === 'delete') return { ok: true, change: { kind: 'delete', ...base } };
  if (row.op !== 'insert' && row.op !== 'update') {
    return { ok: false, reason: `op: expected insert, update or delete, got ${JSON.stringify(row.op)}` };
  }
  if (!isPlainObject(row.data)) {
    return { ok: false, reason: `data: expected an object for ${row.op}, got ${row.data === null ? 'null' : Array.isArray(row.data) ? 'an array' : typeof row.data}` };
  }
  const meta = row.fieldMeta ?? {};
  const stamps = row.fieldTimestamps ?? {};
  if (!isPlainObject(meta)) return { ok: false, reason: 'field_meta: expected an object' };
  if (!isPlainObject(stamps)) return { ok: false, reason: 'field_timestamps: expected an object' };

  const fields: [string, unknown, string][] = [];
  // A row's fields mostly share one instant (the writer stamps them together):
  // parse each distinct entry text and build each distinct stamp once.
  let lastRaw: unknown;
  let lastRawInstant = createdAt;
  let lastInstant = createdAt;
  let lastStamp = `${createdAt}|${pos}`;
  const stampOf = (instant: string) => {
    if (instant !== lastInstant) {
      lastInstant = instant;
      lastStamp = `${instant}|${pos}`;
    }
    return lastStamp;
  };
  for (const key of Object.keys(row.data)) {
    const metaEntry = Object.hasOwn(meta, key) ? meta[key] : undefined;
    const entry = metaEntry ?? (Object.hasOwn(stamps, key) ? stamps[key] : undefined);
    let instant = createdAt;
    if (entry !== undefined && entry !== null) {
      const raw = isPlainObject(entry) ? entry['at'] : entry;
      if (typeof raw === 'string' && raw === lastRaw) {
        instant = lastRawInstant;
      } else {
        const parsed = entryInstant(entry);
        if (!parsed) return { ok: false, reason: `timestamp of field "${key}": expected an ISO-8601 instant, got ${JSON.stringify(entry).slice(0, 80)}` };
        instant = parsed;
        lastRaw = raw;
        lastRawInstant = parsed;
      }
    }
    const why = unrepresentable(row.data[key], 1);
    if (why) return { ok: false, reason: `data field "${key.slice(0, 80)}": ${why}` };
    fields.push([key, row.data[key], stampOf(instant)]);
  }
  return { ok: true, change: { kind: 'data', ...base, fields } };
}

export function emptyState(userId: string, recordId: string): RecordState {
  return { userId, recordId, lastDelete: null, maxPos: null, present: false, fields: new Map() };
}

/**
 * Merges one change into a record state, in place. Idempotent; independent
 * of arrival order except for a late delete, which returns 'rebuild'.
 */
export function applyChange(state: RecordState, change: Change): ApplyResult {
  if (state.lastDelete !== null && change.pos <= state.lastDelete) return 'ignored';
  if (change.kind === 'delete') {
    // A delete that precedes rows already merged: what they contributed
    // cannot be separated from what earlier rows did. Replay from the log.
    if (state.maxPos !== null && change.pos < state.maxPos) return 'rebuild';
    state.lastDelete = change.pos;
    state.maxPos = change.pos;
    state.present = false;
    state.fields.clear();
    return 'applied';
  }
  state.present = true;
  if (state.maxPos === null || change.pos > state.maxPos) state.maxPos = change.pos;
  for (const [key, value, stamp] of change.fields) {
    const current = state.fields.get(key);
    if (current === undefined || stamp >= current.stamp) state.fields.set(key, { value, stamp });
  }
  return 'applied';
}

/** Replays changes from scratch in replay order (used for rebuilds). */
export function replay(userId: string, recordId: string, changes: Change[]): RecordState {
  const state = emptyState(userId, recordId);
  const sorted = [...changes].sort((a, b) => (a.pos < b.pos ? -1 : a.pos > b.pos ? 1 : 0));
  for (const c of sorted) applyChange(state, c);
  return state;
}

/** The record as the webapp would see it: `{ id, ...fields }`, or null when deleted. */
export function materialize(state: RecordState): Record<string, unknown> | null {
  if (!state.present) return null;
  return Object.fromEntries([['id', state.recordId], ...[...state.fields].map(([k, v]) => [k, v.value] as const)]);
}
