/**
 * A reader of `sync_changes` rows as strict as mana-sync's pull and the
 * webapp's check of what it pulled (docs/contract.md §1), stated in our own
 * words so the tests can prove that every row the coordinator writes is one
 * a device can take. A row fails where mana-sync's read would fail (and with
 * it the device's whole pull), or where the webapp would drop the change.
 *
 * 1. Scanning the row: `id`, `table_name`, `record_id`, `op`, `client_id`
 *    are read into strings and `created_at` into a time, `schema_version`
 *    into an integer: a NULL in any of them fails the read.
 * 2. Decoding JSON like Go's `json.Unmarshal`: `data` into a map of any
 *    values (JSON null → no map; any other non-object → error; a number no
 *    float64 holds → error), `field_meta` into a map of strings (JSON null →
 *    no map; a null value → ""; any value that is not a string → error).
 *    `actor` is passed on as raw JSON when the column is not NULL.
 * 3. Projecting onto the wire change: insert → `data`; update → `fields`
 *    holding each field that has both a `field_meta` stamp and a `data`
 *    value; delete → `deletedAt` when `data.deletedAt` is a string. Encoded
 *    as Go encodes it: empty maps, empty strings and absent values omitted.
 * 4. The webapp's check: table and id non-empty strings, op one of three,
 *    `fields` an object of `{ value, at? }` with `at` a string, `data` a
 *    non-null object, `deletedAt` a string, `actor` a non-null object,
 *    `origin` a string. A change failing it is dropped on the device.
 */
import type { Sql } from '../../src/db/pool.js';

/** A row as mana-sync's pull selects it; the jsonb columns as their text. */
export interface StoredRow {
  id: string | null;
  tableName: string | null;
  recordId: string | null;
  op: string | null;
  data: string | null;
  fieldMeta: string | null;
  clientId: string | null;
  createdAt: string | null;
  schemaVersion: number | null;
  spaceId: string | null;
  actor: string | null;
  origin: string | null;
}

export interface WireFieldChange {
  value: unknown;
  at: string;
}

/** The change a device receives, after the JSON round trip. */
export interface WireChange {
  eventId?: string;
  schemaVersion?: number;
  table: string;
  id: string;
  op: string;
  fields?: Record<string, WireFieldChange>;
  data?: Record<string, unknown>;
  deletedAt?: string;
  spaceId?: string;
  actor?: unknown;
  origin?: string;
}

export type ReadOutcome = { ok: true; change: WireChange } | { ok: false; stage: 'scan' | 'decode' | 'device'; error: string };

/** Reads rows of `user_id` (or all) with mana-sync's select list, the JSON columns as text. */
export async function storedRows(sql: Sql, where: { userId?: string; clientId?: string } = {}): Promise<StoredRow[]> {
  return sql<StoredRow[]>`
    SELECT id::text AS id, table_name AS "tableName", record_id AS "recordId", op, data::text AS data,
           field_meta::text AS "fieldMeta", client_id AS "clientId", created_at::text AS "createdAt",
           schema_version AS "schemaVersion", space_id AS "spaceId", actor::text AS actor, origin
    FROM sync_changes
    WHERE (${where.userId ?? null}::text IS NULL OR user_id = ${where.userId ?? null})
      AND (${where.clientId ?? null}::text IS NULL OR client_id = ${where.clientId ?? null})
    ORDER BY created_at, id`;
}

class DecodeError extends Error {}

/** JSON.parse, failing where Go's decoder into float64 would: a number too large for a double. */
function parseLikeGo(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown) => {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new DecodeError('json: cannot unmarshal number into Go value of type float64');
    return value;
  });
}

const kindOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function decodeData(text: string | null): Record<string, unknown> | null {
  if (text === null) return null;
  const v = parseLikeGo(text);
  if (v === null) return null;
  if (kindOf(v) !== 'object') throw new DecodeError(`json: cannot unmarshal ${kindOf(v)} into Go value of type map[string]interface {}`);
  return v as Record<string, unknown>;
}

/**
 * Sets an own property as a Go map (and JSON.parse on the device) holds any
 * key: plain assignment of `__proto__` would set the prototype instead.
 */
function setKey<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function decodeFieldMeta(text: string | null): Record<string, string> | null {
  if (text === null) return null;
  const v = parseLikeGo(text);
  if (v === null) return null;
  if (kindOf(v) !== 'object') throw new DecodeError(`json: cannot unmarshal ${kindOf(v)} into Go value of type map[string]string`);
  const out: Record<string, string> = {};
  for (const [field, stamp] of Object.entries(v as Record<string, unknown>)) {
    if (stamp === null) setKey(out, field, '');
    else if (typeof stamp === 'string') setKey(out, field, stamp);
    else throw new DecodeError(`json: cannot unmarshal ${kindOf(stamp)} into Go value of type string (field_meta.${field})`);
  }
  return out;
}

/** mana-sync's read of one row, then the device's check; the first failure wins. */
export function readLikeManaSync(row: StoredRow): ReadOutcome {
  for (const [column, value] of [
    ['id', row.id],
    ['table_name', row.tableName],
    ['record_id', row.recordId],
    ['op', row.op],
    ['client_id', row.clientId],
    ['created_at', row.createdAt],
    ['schema_version', row.schemaVersion],
  ] as const) {
    if (value === null) return { ok: false, stage: 'scan', error: `can't scan NULL ${column} into a non-pointer Go value` };
  }
  let data: Record<string, unknown> | null;
  let fieldMeta: Record<string, string> | null;
  try {
    data = decodeData(row.data);
    fieldMeta = decodeFieldMeta(row.fieldMeta);
  } catch (e: unknown) {
    if (e instanceof DecodeError) return { ok: false, stage: 'decode', error: `unmarshal for record ${row.recordId}: ${e.message}` };
    throw e;
  }
  const wire: Record<string, unknown> = {
    eventId: row.id,
    schemaVersion: row.schemaVersion! > 0 ? row.schemaVersion : 1,
    table: row.tableName,
    id: row.recordId,
    op: row.op,
  };
  if (row.op === 'insert' && data && Object.keys(data).length > 0) wire['data'] = data;
  if (row.op === 'update') {
    const fields: Record<string, WireFieldChange> = {};
    for (const [field, at] of Object.entries(fieldMeta ?? {})) {
      if (data && Object.hasOwn(data, field)) setKey(fields, field, { value: data[field] ?? null, at });
    }
    if (Object.keys(fields).length > 0) wire['fields'] = fields;
  }
  if (row.op === 'delete' && typeof data?.['deletedAt'] === 'string') wire['deletedAt'] = data['deletedAt'];
  if (row.spaceId) wire['spaceId'] = row.spaceId;
  if (row.actor !== null) wire['actor'] = JSON.parse(row.actor) as unknown;
  if (row.origin) wire['origin'] = row.origin;
  // Over the wire: Go encodes it, the browser parses it.
  const received = JSON.parse(JSON.stringify(wire)) as unknown;
  const problem = deviceProblem(received);
  if (problem) return { ok: false, stage: 'device', error: problem };
  return { ok: true, change: received as WireChange };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** Why the webapp would drop this pulled change, or null when it takes it. */
export function deviceProblem(v: unknown): string | null {
  if (!isObject(v)) return 'not an object';
  if (typeof v['table'] !== 'string' || v['table'] === '') return 'table: expected a non-empty string';
  if (typeof v['id'] !== 'string' || v['id'] === '') return 'id: expected a non-empty string';
  if (!['insert', 'update', 'delete'].includes(v['op'] as string)) return `op: expected insert, update or delete, got ${JSON.stringify(v['op'])}`;
  if (v['fields'] !== undefined) {
    if (!isObject(v['fields'])) return 'fields: expected an object';
    for (const [field, change] of Object.entries(v['fields'])) {
      if (!isObject(change) || !('value' in change)) return `fields.${field}: expected { value, at }`;
      if (change['at'] !== undefined && typeof change['at'] !== 'string') return `fields.${field}.at: expected a string`;
    }
  }
  if (v['data'] !== undefined && !isObject(v['data'])) return 'data: expected an object';
  if (v['deletedAt'] !== undefined && typeof v['deletedAt'] !== 'string') return 'deletedAt: expected a string';
  if (v['eventId'] !== undefined && typeof v['eventId'] !== 'string') return 'eventId: expected a string';
  if (v['schemaVersion'] !== undefined && typeof v['schemaVersion'] !== 'number') return 'schemaVersion: expected a number';
  if (v['actor'] !== undefined && !isObject(v['actor'])) return 'actor: expected an object';
  if (v['origin'] !== undefined && typeof v['origin'] !== 'string') return 'origin: expected a string';
  return null;
}
