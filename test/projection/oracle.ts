/**
 * A plain sequential model of what a user's devices hold, written from the
 * neighbours' rules (docs/contract.md §1) step by step and independent of
 * src/projection (only the instant parser is shared), so the property tests
 * compare two implementations, not one with itself:
 *
 * 1. the log is sorted by (created_at, id);
 * 2. each row is read as mana-sync reads it (a row it cannot decode fails
 *    the pull: skipped here), turned into the change mana-sync sends and
 *    through JSON, as on the wire;
 * 3. the device refuses changes it deems malformed;
 * 4. the rest is applied one by one to an empty store, keeping per field
 *    the stamp of the write that set it, comparing with JavaScript's `>=`;
 * 5. for every user, with the rows that user's devices receive (its own,
 *    and others' rows in a real space it stamped on the same record).
 */
import { parseInstant } from '../../src/projection/instant.js';

/** One sync_changes row with every column as stored (undefined: SQL NULL). */
export interface LogRow {
  id: string;
  tableName: string;
  userId: string;
  recordId: string;
  op: string;
  data: unknown;
  fieldMeta: unknown;
  fieldTimestamps: unknown;
  /** Canonical, fixed width (microseconds). */
  createdAt: string;
  spaceId: string | null;
  actor: unknown;
  origin: string | null;
  schemaVersion: number | null;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Our own limits (docs/contract.md §1): such rows are skipped. */
const MAX_DEPTH = 100;
const MAX_ID_BYTES = 1024;

function tooDeepOrHuge(v: unknown, depth: number): boolean {
  if (typeof v === 'number') return !Number.isFinite(v);
  if (typeof v !== 'object' || v === null) return false;
  if (depth >= MAX_DEPTH) return true;
  return (Array.isArray(v) ? v : Object.values(v)).some((x) => tooDeepOrHuge(x, depth + 1));
}

/** Step 2: mana-sync's read of a row and the change it sends, as JSON text; null when the pull fails. */
function wireChange(row: LogRow, metaColumn: 'field_meta' | 'field_timestamps'): Obj | null {
  // Decoding data into a map of any: an object or nothing; numbers must fit a double.
  let data: Obj | null = null;
  if (row.data !== undefined && row.data !== null) {
    if (!isObj(row.data)) return null;
    if (Object.values(row.data).some((v) => tooDeepOrHuge(v, 1))) return null;
    data = row.data;
  }
  // Decoding the metadata into a map of strings; a JSON null entry becomes "".
  const rawMeta = metaColumn === 'field_meta' ? row.fieldMeta : row.fieldTimestamps;
  let meta: Record<string, string> | null = null;
  if (rawMeta !== undefined && rawMeta !== null) {
    if (!isObj(rawMeta)) return null;
    meta = {};
    for (const [k, v] of Object.entries(rawMeta)) {
      if (v === null) meta[k] = '';
      else if (typeof v === 'string') meta[k] = v;
      else return null;
    }
  }
  const change: Obj = { eventId: row.id, schemaVersion: row.schemaVersion && row.schemaVersion > 0 ? row.schemaVersion : 1, table: row.tableName, id: row.recordId, op: row.op };
  if (row.op === 'insert') {
    if (data && Object.keys(data).length > 0) change['data'] = data;
    // Else the device takes the envelope as the record: its actor must hold as data does (our rule).
    else if (tooDeepOrHuge(row.actor, 1)) return null;
  } else if (row.op === 'update') {
    const fields: Obj = {};
    for (const [k, at] of Object.entries(meta ?? {})) if (data && Object.hasOwn(data, k)) fields[k] = { value: data[k], at };
    if (Object.keys(fields).length > 0) change['fields'] = fields;
  } else if (row.op === 'delete') {
    if (data && typeof data['deletedAt'] === 'string') change['deletedAt'] = data['deletedAt'];
  }
  if (row.spaceId) change['spaceId'] = row.spaceId;
  if (row.actor !== undefined) change['actor'] = row.actor;
  if (row.origin) change['origin'] = row.origin;
  return JSON.parse(JSON.stringify(change)) as Obj;
}

/** Step 3: the device's check of an incoming change. */
function deviceAccepts(c: Obj): boolean {
  if (typeof c['id'] !== 'string' || c['id'] === '') return false;
  if (c['op'] !== 'insert' && c['op'] !== 'update' && c['op'] !== 'delete') return false;
  if (Object.hasOwn(c, 'actor') && (typeof c['actor'] !== 'object' || c['actor'] === null)) return false;
  return true;
}

/** A stored record: its values and, per field, the stamp that set it. */
interface Held {
  values: Obj;
  stamps: Map<string, unknown>;
  /** Who made it exist (for the author when authorId is not set). */
  creator: string;
}

const BOOKKEEPING = new Set(['id', '__fieldMeta', '_updatedAtIndex']);
// The webapp compares stamps with JavaScript's own `>=`, whatever their types.
const atLeast = (a: unknown, b: unknown): boolean => (a as number) >= (b as number);
const canCompare = (v: unknown): boolean => {
  try {
    void ((v as number) >= 0);
    return true;
  } catch {
    return false;
  }
};

function setField(h: Held, key: string, value: unknown, stamp: unknown): void {
  Object.defineProperty(h.values, key, { value, enumerable: true, writable: true, configurable: true });
  h.stamps.set(key, stamp);
}

/** Step 4: one change applied to one record (undefined: absent); returns the record after it. */
function apply(held: Held | undefined, c: Obj, writer: string, deviceNow: string): Held | undefined | 'malformed' {
  if (c['op'] === 'delete') {
    if (!held) return undefined;
    const deletedAt = c['deletedAt'];
    if (typeof deletedAt === 'string' && deletedAt !== '') {
      if (atLeast(deletedAt, held.stamps.has('deletedAt') ? held.stamps.get('deletedAt') : '')) setField(held, 'deletedAt', deletedAt, deletedAt);
      return held;
    }
    return undefined;
  }
  if (c['op'] === 'insert') {
    const source = (c['data'] as Obj | undefined) ?? c;
    const stamp = source['updatedAt'] ?? source['createdAt'] ?? deviceNow;
    if (!canCompare(stamp)) return 'malformed';
    const keys = Object.keys(source).filter((k) => !BOOKKEEPING.has(k));
    if (!held) {
      const fresh: Held = { values: {}, stamps: new Map(), creator: writer };
      for (const k of keys) setField(fresh, k, source[k], stamp);
      return fresh;
    }
    for (const k of keys) if (atLeast(stamp, held.stamps.has(k) ? held.stamps.get(k) : '')) setField(held, k, source[k], stamp);
    return held;
  }
  const fields = c['fields'] as Record<string, { value: unknown; at: string }> | undefined;
  if (!fields) return held;
  // An update's `id` would move the record to another key on the device: not modelled, ignored.
  const entries = Object.entries(fields).filter(([k]) => !BOOKKEEPING.has(k));
  if (!held) {
    const fresh: Held = { values: {}, stamps: new Map(), creator: writer };
    for (const [k, f] of entries) setField(fresh, k, f.value, f.at);
    return fresh;
  }
  for (const [k, f] of entries) if (atLeast(f.at, held.stamps.has(k) ? held.stamps.get(k) : '')) setField(held, k, f.value, f.at);
  return held;
}

export const realSpace = (s: string | null): s is string => typeof s === 'string' && s !== '' && !s.startsWith('_personal:');

/** Step 5: the rows of `recordId` the devices of `viewer` receive. */
export function viewOf(rows: LogRow[], tableName: string, viewer: string, recordId: string): LogRow[] {
  const mine = rows.filter((r) => r.tableName === tableName && r.recordId === recordId && r.userId === viewer);
  const spaces = new Set(mine.map((r) => r.spaceId).filter(realSpace));
  return rows.filter((r) => r.tableName === tableName && r.recordId === recordId && (r.userId === viewer || (realSpace(r.spaceId) && spaces.has(r.spaceId))));
}

export interface ViewResult {
  /** `{ id, ...fields }` */
  record: Obj;
  /** authorId when a non-empty string, else who made the record exist. */
  author: string;
}

/** Steps 1–4 for one view's rows: the record the devices hold, or null. */
export function replayView(rows: LogRow[], recordId: string, metaColumn: 'field_meta' | 'field_timestamps'): ViewResult | null {
  const usable = rows.filter((r) => parseInstant(r.createdAt) !== null && Buffer.byteLength(r.userId) <= MAX_ID_BYTES && Buffer.byteLength(r.recordId) <= MAX_ID_BYTES);
  usable.sort((a, b) => (a.createdAt !== b.createdAt ? (a.createdAt < b.createdAt ? -1 : 1) : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let held: Held | undefined;
  for (const row of usable) {
    const c = wireChange(row, metaColumn);
    if (!c || !deviceAccepts(c)) continue;
    // A device stamping an insert with its own clock: the row's created_at, as toISOString() writes it.
    const next = apply(held, c, row.userId, `${row.createdAt.slice(0, 23)}Z`);
    if (next !== 'malformed') held = next;
  }
  if (!held) return null;
  const authorId = held.values['authorId'];
  const record: Obj = { id: recordId };
  for (const [k, v] of Object.entries(held.values)) Object.defineProperty(record, k, { value: v, enumerable: true, writable: true, configurable: true });
  return { record, author: typeof authorId === 'string' && authorId !== '' ? authorId : held.creator };
}

/** Every view of every record of the log, keyed "table\0viewer\0record"; absent records left out. */
export function oracleViews(rows: LogRow[], metaColumn: 'field_meta' | 'field_timestamps' = 'field_meta'): Map<string, ViewResult> {
  const out = new Map<string, ViewResult>();
  // One record at a time (its rows are all that matter to its views).
  const records = new Map<string, LogRow[]>();
  for (const r of rows) {
    const k = `${r.tableName}\u0000${r.recordId}`;
    const list = records.get(k);
    if (list) list.push(r);
    else records.set(k, [r]);
  }
  for (const log of records.values()) {
    const { tableName, recordId } = log[0]!;
    for (const viewer of new Set(log.map((r) => r.userId))) {
      const v = replayView(viewOf(log, tableName, viewer, recordId), recordId, metaColumn);
      if (v) out.set(`${tableName}\u0000${viewer}\u0000${recordId}`, v);
    }
  }
  return out;
}

/** IndexedDB can index it (strings, numbers, arrays of such): Dexie's createdAt index lists the record. */
function indexable(v: unknown): boolean {
  if (typeof v === 'string' || typeof v === 'number') return true;
  return Array.isArray(v) && v.every(indexable);
}

/** What the webapp's runner would run at `nowIso` (its toISOString()), of a viewer's view. */
export function runnerWouldRun(view: ViewResult, viewer: string, nowIso: string): boolean {
  const m = view.record;
  return (
    indexable(m['createdAt']) &&
    m['state'] === 'active' &&
    typeof m['nextRunAt'] === 'string' &&
    m['nextRunAt'] <= nowIso &&
    !m['deletedAt'] &&
    view.author === viewer
  );
}
