/**
 * What the webapp's apply makes of a record (docs/contract.md §1): the rules
 * live here, applied to the Changes wire.ts decodes. The other places that
 * express them — mergeDeltas in snapshot-store.ts (a merge in SQL) and the
 * bulk read's shortcut in change-source.ts — are property-tested against
 * this file (test/projection/merge-deltas.property.test.ts,
 * bulk-shortcut.property.test.ts).
 *
 * The webapp applies a record's rows in created_at order to an empty store:
 * - data (insert or update): an absent record becomes exactly these fields;
 *   a present one takes each field whose stamp is `>=` its stored one;
 * - soft delete: a present record takes `deletedAt` the same way; an absent
 *   one stays absent;
 * - hard delete: the record is removed.
 *
 * Rows reach the projection in any order (late commits). Everything before
 * the last hard delete is gone, so it is ignored. After it, when every
 * stamp is plain (stamp.ts), a field's value is the write with the greatest
 * version — (stamp, position) — among the record's first present-making row
 * and the writes after it: an order-independent maximum, so a late row
 * merges exactly. What depends on order is kept as positions: where the
 * record became present (a soft delete before it does nothing) and the last
 * soft delete that came before that. A late row that would change those, a
 * late hard delete, or any late row where a stamp is not plain asks the
 * caller for a rebuild from the log ('rebuild'); rows in order are applied
 * exactly as the webapp does, whatever their stamps.
 */
import { isPlainVersion, wins } from './stamp.js';
import type { Change, Pos } from './wire.js';

export interface FieldVersion {
  value: unknown;
  /** stamp.ts versionOf(stamp, versionPosition(created_at, id)). */
  version: string;
}

/** One view of one record (views.ts): the rows of `recordId` its viewer's devices receive. */
export interface RecordState {
  tableName: string;
  /** The viewer. */
  userId: string;
  recordId: string;
  /** The last hard delete; rows at or before it are irrelevant. */
  lastDelete: Pos | null;
  /** The newest row applied since lastDelete. */
  maxPos: Pos | null;
  /** The earliest present-making row since lastDelete; the record is present when it is set. */
  firstPos: Pos | null;
  /** Who wrote that row. */
  firstUser: string | null;
  /** The newest soft delete since lastDelete that came before firstPos (it did nothing). */
  earlySoftDelete: Pos | null;
  /** Every stamp applied since lastDelete is plain: late rows merge without a rebuild. */
  plain: boolean;
  fields: Map<string, FieldVersion>;
}

export type ApplyResult = 'applied' | 'ignored' | 'rebuild';

export function emptyState(tableName: string, userId: string, recordId: string): RecordState {
  return { tableName, userId, recordId, lastDelete: null, maxPos: null, firstPos: null, firstUser: null, earlySoftDelete: null, plain: true, fields: new Map() };
}

export const isPresent = (s: RecordState): boolean => s.firstPos !== null;

const later = (a: Pos | null, b: Pos): Pos => (a === null || b > a ? b : a);

function write(state: RecordState, key: string, value: unknown, version: string): void {
  const current = state.fields.get(key);
  if (wins(version, current?.version)) state.fields.set(key, { value, version });
}

/**
 * Merges one change into a state, in place. Idempotent; a row arriving after
 * newer ones merges exactly when its stamps are plain, else 'rebuild'.
 */
export function applyChange(state: RecordState, change: Change): ApplyResult {
  const { pos } = change;
  if (state.lastDelete !== null && pos <= state.lastDelete) return 'ignored';
  const late = state.maxPos !== null && pos < state.maxPos;
  if (change.kind === 'hard') {
    // What rows after it contributed cannot be told apart from what rows before it did.
    if (late) return 'rebuild';
    Object.assign(state, { lastDelete: pos, maxPos: pos, firstPos: null, firstUser: null, earlySoftDelete: null, plain: true });
    state.fields.clear();
    return 'applied';
  }
  if (change.kind === 'soft' && (state.firstPos === null || pos < state.firstPos)) {
    // Before the record exists on the device: nothing, unless a present-making row turns up before it.
    state.earlySoftDelete = later(state.earlySoftDelete, pos);
    state.maxPos = later(state.maxPos, pos);
    return 'applied';
  }
  if (late && !(state.plain && change.plain)) return 'rebuild';
  state.maxPos = later(state.maxPos, pos);
  state.plain &&= change.plain;
  if (change.kind === 'soft') {
    write(state, 'deletedAt', change.value, change.version);
    return 'applied';
  }
  if (state.firstPos === null || pos < state.firstPos) {
    // This row makes the record present: a soft delete after it was wrongly skipped.
    if (state.earlySoftDelete !== null && pos < state.earlySoftDelete) return 'rebuild';
    const absent = state.firstPos === null;
    state.firstPos = pos;
    state.firstUser = change.userId;
    if (absent) {
      // The webapp puts the record as the row has it, comparing nothing.
      for (const [key, value, version] of change.fields) state.fields.set(key, { value, version });
      return 'applied';
    }
  }
  for (const [key, value, version] of change.fields) write(state, key, value, version);
  return 'applied';
}

const byPos = (a: Change, b: Change) => (a.pos < b.pos ? -1 : a.pos > b.pos ? 1 : 0);

/** Replays a view's changes from nothing in replay order (never asks for a rebuild). */
export function replay(tableName: string, userId: string, recordId: string, changes: Change[]): RecordState {
  const state = emptyState(tableName, userId, recordId);
  for (const c of [...changes].sort(byPos)) applyChange(state, c);
  return state;
}

/**
 * What a present record with plain stamps takes from these changes, none a
 * hard delete, all plain and after its first row: the fields they win
 * among themselves (mergeDeltas sends them to be merged in SQL).
 */
export function deltaOf(tableName: string, userId: string, recordId: string, changes: Change[]): RecordState {
  const state = emptyState(tableName, userId, recordId);
  // Present from before every position, so each data row and soft delete merges.
  state.firstPos = '';
  for (const c of changes) applyChange(state, c);
  return state;
}

/** True when the changes can go to mergeDeltas: no hard delete, every stamp plain. */
export function mergeableInSql(changes: Change[]): boolean {
  return changes.every((c) => c.kind !== 'hard' && c.plain);
}

/** The record as the viewer's devices hold it: `{ id, ...fields }`, or null when absent. */
export function materialize(state: RecordState): Record<string, unknown> | null {
  if (!isPresent(state)) return null;
  const out: Record<string, unknown> = { id: state.recordId };
  for (const [k, v] of state.fields) Object.defineProperty(out, k, { value: v.value, enumerable: true, writable: true, configurable: true });
  return out;
}

/** True when every stored version is plain (a state loaded from a snapshot). */
export function versionsArePlain(state: RecordState): boolean {
  for (const v of state.fields.values()) if (!isPlainVersion(v.version)) return false;
  return true;
}
