/**
 * What a device receives for one sync_changes row, and so what it can do to
 * a record (docs/contract.md §1). Two stages, both the neighbours' rules
 * stated in our words:
 *
 * - mana-sync's read decodes `data` as a JSON object (or nothing) and the
 *   metadata column as an object of strings (a JSON null entry reads as ""),
 *   numbers as doubles; anything else fails the user's whole pull. The
 *   projection skips such a row, counts and logs it.
 * - mana-sync hands the row over as one change: an insert carries `data`
 *   (omitted when empty, and the webapp then takes the change envelope
 *   itself as the data); an update carries only the fields that have both a
 *   metadata string and a `data` key (none: no update at all); a delete
 *   carries `data.deletedAt` when it is a string. The webapp drops a change
 *   with an empty record id, an unknown op or a non-object actor.
 *
 * decodeRow turns a row into the one Change lww.ts applies, or says why it
 * is skipped, or that it does nothing. It never throws.
 */
import { parseInstant } from './instant.js';
import { isPlainVersion, versionOf, versionPosition, type VersionPosition } from './stamp.js';

/** The ops mana-sync stores (its table's CHECK); devices drop a change with any other. */
export const SYNC_OPS = ['insert', 'update', 'delete'] as const;

/** A raw row of sync_changes as the projection reads it (created_at canonical, fixed width). */
export interface ChangeRow {
  id: string;
  tableName: string;
  userId: string;
  recordId: string;
  op: unknown;
  data: unknown;
  /** The metadata column mana-sync reads: field_meta, or field_timestamps on a database without it. */
  meta: unknown;
  createdAt: string;
  spaceId: string | null;
  /** The actor column; undefined for SQL NULL (a JSON null is null). */
  actor?: unknown;
  origin?: string | null;
  schemaVersion?: number | null;
}

/** Replay position: created_at, then id; fixed-width created_at, so string order is replay order. */
export type Pos = string;

/** [field, value, version] (stamp.ts). */
export type FieldWrite = [key: string, value: unknown, version: string];

interface ChangeBase {
  id: string;
  tableName: string;
  /** The user who wrote the row (its view may be another user's, see views.ts). */
  userId: string;
  recordId: string;
  spaceId: string | null;
  pos: Pos;
}

export type Change =
  /** An insert or an update: present-making, fields written with their versions. */
  | (ChangeBase & { kind: 'data'; plain: boolean; fields: FieldWrite[] })
  /** A delete carrying a deletedAt string: `deletedAt` written with that string as value and stamp. */
  | (ChangeBase & { kind: 'soft'; plain: boolean; value: string; version: string })
  /** Any other delete: the record is removed. */
  | (ChangeBase & { kind: 'hard' });

/** ok with a null change: the row does nothing on a device (an update without a counted field). */
export type Decoded = { ok: true; change: Change | null } | { ok: false; reason: string };

/** Keys that are the device's own bookkeeping, never a record's fields (the webapp overwrites or skips them). */
const INTERNAL_KEYS = new Set(['id', '__fieldMeta', '_updatedAtIndex']);

/** Far deeper than any real record; the write-back's JSON.stringify recurses and throws near 5,000. */
export const MAX_DATA_DEPTH = 100;

/**
 * Longest user_id / record_id (UTF-8 bytes) the projection keeps. Real ids are
 * uuids; together both must fit one btree entry (2704 bytes) of the snapshot
 * and occurrence keys, or the write-back fails on every pass.
 */
export const MAX_ID_BYTES = 1024;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const kindOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

/**
 * Why a data value cannot be stored as written, or null: a number beyond
 * the double range (mana-sync's decoder refuses it, JSON.parse reads
 * Infinity) or nesting deeper than MAX_DATA_DEPTH (ours: the write-back
 * would throw on every pass, so one such row would stall the projection).
 */
function unrepresentable(value: unknown, depth: number): string | null {
  if (typeof value === 'number') return Number.isFinite(value) ? null : 'a number beyond the double range';
  if (typeof value !== 'object' || value === null) return null;
  if (depth >= MAX_DATA_DEPTH) return `nested deeper than ${MAX_DATA_DEPTH} levels`;
  // Plain loops: this runs on every value of every row, and Object.values would allocate.
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const why = unrepresentable(value[i], depth + 1);
      if (why) return why;
    }
    return null;
  }
  const o = value as Record<string, unknown>;
  for (const k in o) {
    const why = unrepresentable(o[k], depth + 1);
    if (why) return why;
  }
  return null;
}

/** True when JavaScript can turn the value into a primitive (an object whose own `toString` is data cannot). */
function comparable(stamp: unknown): boolean {
  try {
    void ((stamp as number) >= 0);
    return true;
  } catch {
    return false;
  }
}

/** Why mana-sync's read of this row would fail, or null. */
function pullFailure(row: ChangeRow): string | null {
  if (row.data !== null && row.data !== undefined && !isPlainObject(row.data)) return `data: expected an object or null, got ${kindOf(row.data)}`;
  if (row.meta !== null && row.meta !== undefined) {
    if (!isPlainObject(row.meta)) return `field metadata: expected an object of strings, got ${kindOf(row.meta)}`;
    const meta = row.meta;
    for (const k in meta) {
      const v = meta[k];
      if (v !== null && typeof v !== 'string') return `field metadata of "${k.slice(0, 80)}": expected a string, got ${kindOf(v)}`;
    }
  }
  if (isPlainObject(row.data)) {
    const data = row.data;
    for (const k in data) {
      const why = unrepresentable(data[k], 1);
      if (why) return `data field "${k.slice(0, 80)}": ${why}`;
    }
  }
  return null;
}

/** Why the webapp drops the change mana-sync makes of this row, or null. */
function deviceDrop(row: ChangeRow): string | null {
  if (row.recordId === '') return 'record_id: empty (devices drop the change)';
  if (!(SYNC_OPS as readonly unknown[]).includes(row.op)) return `op: expected insert, update or delete, got ${JSON.stringify(row.op)?.slice(0, 80)}`;
  if (row.actor !== undefined && (typeof row.actor !== 'object' || row.actor === null)) return `actor: expected an object, got ${kindOf(row.actor)} (devices drop the change)`;
  return null;
}

/** The change envelope mana-sync sends for an insert without data, which the webapp then takes as the record. */
function envelopeOf(row: ChangeRow): Record<string, unknown> {
  const env: Record<string, unknown> = {
    eventId: row.id,
    schemaVersion: typeof row.schemaVersion === 'number' && row.schemaVersion > 0 ? row.schemaVersion : 1,
    table: row.tableName,
    id: row.recordId,
    op: 'insert',
  };
  if (row.spaceId) env['spaceId'] = row.spaceId;
  if (row.actor !== undefined) env['actor'] = row.actor;
  if (row.origin) env['origin'] = row.origin;
  return env;
}

/** The `new Date().toISOString()` a device would stamp an insert with, taken as the row's created_at. */
export function deviceNowOf(createdAt: string): string {
  return `${createdAt.slice(0, 23)}Z`;
}

function insertOf(row: ChangeRow, base: ChangeBase, createdAt: string, at: VersionPosition): Decoded {
  const hasData = isPlainObject(row.data) && Object.keys(row.data).length > 0;
  const source = hasData ? (row.data as Record<string, unknown>) : envelopeOf(row);
  // The envelope's actor is passed through by mana-sync undecoded: check it as data was checked.
  const why = hasData ? null : unrepresentable(source['actor'], 1);
  if (why) return { ok: false, reason: `actor: ${why}` };
  const stamp = source['updatedAt'] ?? source['createdAt'] ?? deviceNowOf(createdAt);
  if (!comparable(stamp)) return { ok: false, reason: 'updatedAt/createdAt: cannot be compared (devices fail to apply the change)' };
  const version = versionOf(stamp, at);
  const fields: FieldWrite[] = [];
  for (const key in source) {
    if (!INTERNAL_KEYS.has(key)) fields.push([key, source[key], version]);
  }
  return { ok: true, change: { kind: 'data', ...base, plain: isPlainVersion(version), fields } };
}

function updateOf(row: ChangeRow, base: ChangeBase, at: VersionPosition): Decoded {
  if (!isPlainObject(row.data) || !isPlainObject(row.meta)) return { ok: true, change: null };
  const data = row.data;
  const fields: FieldWrite[] = [];
  let counted = 0;
  let plain = true;
  // A row's fields mostly share one stamp: build each distinct version once.
  let lastStamp: string | undefined;
  let lastVersion = '';
  const meta = row.meta;
  for (const key in meta) {
    const entry = meta[key];
    if (!Object.hasOwn(data, key)) continue;
    counted++;
    if (INTERNAL_KEYS.has(key)) continue;
    const stamp = (entry as string | null) ?? '';
    if (stamp !== lastStamp) {
      lastStamp = stamp;
      lastVersion = versionOf(stamp, at);
      plain &&= isPlainVersion(lastVersion);
    }
    fields.push([key, data[key], lastVersion]);
  }
  // No counted field: mana-sync sends no `fields` at all and the device skips the change.
  if (counted === 0) return { ok: true, change: null };
  return { ok: true, change: { kind: 'data', ...base, plain, fields } };
}

/** Decodes one row (see the module comment). */
export function decodeRow(row: ChangeRow): Decoded {
  const createdAt = parseInstant(row.createdAt);
  if (!createdAt) return { ok: false, reason: `created_at: expected an instant, got ${JSON.stringify(row.createdAt)}` };
  if (typeof row.id !== 'string' || typeof row.recordId !== 'string' || typeof row.userId !== 'string') {
    return { ok: false, reason: 'id, record_id and user_id: expected strings' };
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes: most ids need no count.
  if (row.userId.length * 3 > MAX_ID_BYTES || row.recordId.length * 3 > MAX_ID_BYTES) {
    for (const [name, value] of [['user_id', row.userId], ['record_id', row.recordId]] as const) {
      const bytes = Buffer.byteLength(value);
      if (bytes > MAX_ID_BYTES) return { ok: false, reason: `${name}: expected at most ${MAX_ID_BYTES} bytes, got ${bytes}` };
    }
  }
  const why = pullFailure(row) ?? deviceDrop(row);
  if (why) return { ok: false, reason: why };
  const base: ChangeBase = { id: row.id, tableName: row.tableName, userId: row.userId, recordId: row.recordId, spaceId: row.spaceId, pos: `${createdAt}|${row.id}` };
  const at = versionPosition(createdAt, row.id);
  if (row.op === 'insert') return insertOf(row, base, createdAt, at);
  if (row.op === 'update') return updateOf(row, base, at);
  const deletedAt = isPlainObject(row.data) && Object.hasOwn(row.data, 'deletedAt') ? row.data['deletedAt'] : undefined;
  if (typeof deletedAt === 'string' && deletedAt !== '') {
    const version = versionOf(deletedAt, at);
    return { ok: true, change: { kind: 'soft', ...base, plain: isPlainVersion(version), value: deletedAt, version } };
  }
  return { ok: true, change: { kind: 'hard', ...base } };
}
