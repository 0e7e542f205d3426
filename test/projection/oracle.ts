/**
 * The contract's replay, written as literally as docs/contract.md §1 states it:
 * sort by (created_at, id), walk the rows, a field wins when its timestamp is
 * at least the stored one. Deliberately independent of src/projection/lww.ts
 * (only the instant parser is shared) so the property tests compare two
 * implementations, not one with itself.
 */
import { parseInstant } from '../../src/projection/instant.js';
import type { ChangeRow } from '../../src/projection/lww.js';

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function fieldTs(row: ChangeRow, key: string, createdAt: string): string | null {
  const meta = isObj(row.fieldMeta) ? row.fieldMeta : {};
  const stamps = isObj(row.fieldTimestamps) ? row.fieldTimestamps : {};
  let entry = Object.hasOwn(meta, key) ? meta[key] : undefined;
  if (entry === undefined || entry === null) entry = Object.hasOwn(stamps, key) ? stamps[key] : undefined;
  if (entry === undefined || entry === null) return createdAt;
  if (typeof entry === 'string') return parseInstant(entry);
  if (isObj(entry)) return parseInstant(entry['at']);
  return null;
}

function malformed(row: ChangeRow): boolean {
  const createdAt = parseInstant(row.createdAt);
  if (!createdAt) return true;
  if (row.op === 'delete') return false;
  if (row.op !== 'insert' && row.op !== 'update') return true;
  if (!isObj(row.data)) return true;
  if (row.fieldMeta != null && !isObj(row.fieldMeta)) return true;
  if (row.fieldTimestamps != null && !isObj(row.fieldTimestamps)) return true;
  return Object.keys(row.data).some((k) => fieldTs(row, k, createdAt) === null);
}

/** Full replay of every row of the log: key "user\0record" → record (deleted ones absent). */
export function oracleReplay(rows: ChangeRow[]): Map<string, Record<string, unknown>> {
  const valid = rows.filter((r) => !malformed(r));
  valid.sort((a, b) => {
    const ca = parseInstant(a.createdAt)!;
    const cb = parseInstant(b.createdAt)!;
    if (ca !== cb) return ca < cb ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
  const records = new Map<string, { values: Map<string, unknown>; ts: Map<string, string> }>();
  for (const row of valid) {
    const key = `${row.userId}\u0000${row.recordId}`;
    if (row.op === 'delete') {
      records.delete(key);
      continue;
    }
    const data = row.data as Record<string, unknown>;
    const createdAt = parseInstant(row.createdAt)!;
    let rec = records.get(key);
    if (!rec) {
      rec = { values: new Map([['id', row.recordId]]), ts: new Map() };
      for (const k of Object.keys(data)) {
        rec.values.set(k, data[k]);
        rec.ts.set(k, fieldTs(row, k, createdAt)!);
      }
      records.set(key, rec);
      continue;
    }
    for (const k of Object.keys(data)) {
      const t = fieldTs(row, k, createdAt)!;
      const stored = rec.ts.get(k);
      if (stored === undefined || t >= stored) {
        rec.values.set(k, data[k]);
        rec.ts.set(k, t);
      }
    }
  }
  const out = new Map<string, Record<string, unknown>>();
  for (const [k, rec] of records) out.set(k, Object.fromEntries(rec.values));
  return out;
}
