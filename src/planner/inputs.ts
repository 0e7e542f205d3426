/**
 * Resolving a mission's inputs on the server. Only plaintext records the
 * server can read are resolved (goals); everything else is skipped with a
 * reason the prompt states, and an encrypted value is never passed on.
 */
import type { Sql } from '../db/pool.js';
import { isEncrypted, type MissionInputRef } from '../projection/mission.js';
import { currentRecord, type SyncColumns } from '../projection/change-source.js';
import type { ResolvedInput, SkippedInput } from './prompt.js';

/** Modules whose records are stored in plaintext and may be read by the server. */
export const SERVER_READABLE_MODULES: ReadonlySet<string> = new Set(['goals']);
const MAX_INPUTS = 10;

function describe(record: Record<string, unknown>): { title: string; content: string } | { encrypted: true } {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(record)) {
    if (isEncrypted(v)) return { encrypted: true };
    if (k === 'id' || v === null || v === undefined || typeof v === 'object') continue;
    parts.push(`${k}: ${String(v)}`);
  }
  // A record is a device's data: its id may be anything JSON holds, and String() on an
  // object whose toString is not a function throws, which failed every planning run.
  const id = record['id'];
  const title = typeof record['title'] === 'string' ? record['title'] : typeof id === 'string' || typeof id === 'number' ? String(id) : '(untitled)';
  return { title, content: parts.join('\n') };
}

export async function resolveInputs(
  sql: Sql,
  cols: SyncColumns,
  userId: string,
  refs: unknown,
): Promise<{ resolved: ResolvedInput[]; skipped: SkippedInput[] }> {
  const resolved: ResolvedInput[] = [];
  const skipped: SkippedInput[] = [];
  const list = Array.isArray(refs) ? refs.slice(0, MAX_INPUTS) : [];
  for (const raw of list) {
    if (typeof raw !== 'object' || raw === null) continue;
    const ref = raw as Partial<MissionInputRef>;
    if (typeof ref.module !== 'string' || typeof ref.table !== 'string' || typeof ref.id !== 'string') continue;
    const input = { module: ref.module, table: ref.table, id: ref.id };
    if (!SERVER_READABLE_MODULES.has(input.module)) {
      skipped.push({ ref: input, reason: `${input.module} records are only readable on the user's device` });
      continue;
    }
    const record = await currentRecord(sql, cols, userId, input.id, { appId: input.module, tableName: input.table });
    if (!record || record['deletedAt']) {
      skipped.push({ ref: input, reason: 'record not found' });
      continue;
    }
    const d = describe(record);
    if ('encrypted' in d) skipped.push({ ref: input, reason: 'record is encrypted' });
    else resolved.push({ ref: input, ...d });
  }
  return { resolved, skipped };
}
