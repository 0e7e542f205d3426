/**
 * The one builder of the rows the coordinator writes into mana-sync's
 * change log: a mission `update` stored the way mana-sync stores a device's
 * update (docs/contract.md §6). Pure: the caller passes the instant, the
 * columns the table has, and who writes.
 *
 * - `data` holds exactly the fields written, nothing else (the webapp keeps
 *   `updatedAt` off the wire: it derives it from the field stamps).
 * - `field_meta` maps each of them to ONE string, `Date#toISOString()` form:
 *   mana-sync decodes the column as a map of strings, and one value of any
 *   other type fails every pull of the user's `ai` tables. A table with no
 *   `field_meta` (an older mana-sync) gets the same map in `field_timestamps`.
 * - `actor` is the webapp's AI actor and `origin` `'agent'`: the row-level
 *   columns where mana-sync keeps who wrote (never per field).
 * - `space_id` is the record's space, as mana-sync files a device's update.
 */
import type { SyncColumns } from '../projection/change-source.js';
import { MISSIONS } from '../projection/tables.js';
import { isEncrypted } from '../projection/mission.js';
import { DEFAULT_AGENT_ID, DEFAULT_AGENT_NAME } from '../agents/agent.js';

/** The coordinator's client id on every row it writes (devices pull rows of every other client id). */
export const RUNNER_CLIENT_ID = 'mana-ai-runner';
/** What mana-sync stores as `origin` for a write an AI agent made. */
export const AGENT_ORIGIN = 'agent';

/** Whose write it is: the mission's agent, as the webapp names it in its actors. */
export interface WritePrincipal {
  /** The agent's id (the webapp's `principalId`). */
  id: string;
  /** The agent's name at write time (the webapp's cached `displayName`). */
  displayName: string;
}

/**
 * The webapp's default agent, which it attributes a mission's AI writes to
 * when the mission names no agent of its own.
 */
export const DEFAULT_AGENT: WritePrincipal = Object.freeze({ id: DEFAULT_AGENT_ID, displayName: DEFAULT_AGENT_NAME });

/** The webapp's AI actor shape (`kind: 'ai'`), as its own mission runner stamps it. */
export interface AiActor {
  kind: 'ai';
  principalId: string;
  displayName: string;
  missionId: string;
  iterationId: string;
  rationale: string;
}

/**
 * The actor of a server write for one iteration of a mission. The
 * rationale is the mission's objective, as the webapp gives its own runs;
 * an encrypted or missing one gives '' (ciphertext explains nothing).
 */
export function aiActor(input: { principal?: WritePrincipal; missionId: string; iterationId: string; objective?: unknown }): AiActor {
  const principal = input.principal ?? DEFAULT_AGENT;
  const objective = input.objective;
  return {
    kind: 'ai',
    principalId: principal.id,
    displayName: principal.displayName,
    missionId: input.missionId,
    iterationId: input.iterationId,
    rationale: typeof objective === 'string' && !isEncrypted(objective) ? objective : '',
  };
}

/** The space a record belongs to, as mana-sync files it: a non-empty string `spaceId`, else none. */
export function spaceOf(record: Record<string, unknown> | null | undefined): string | null {
  const space = record?.['spaceId'];
  return typeof space === 'string' && space !== '' ? space : null;
}

export interface MissionUpdate {
  userId: string;
  missionId: string;
  /** Exactly the fields written. */
  data: Record<string, unknown>;
  /** The stamp of every field written. */
  at: Date;
  actor: AiActor;
  /** The record's space; written only when the table has `space_id`. */
  spaceId: string | null;
}

/** Which optional columns the change log has; decides what a row carries. */
export interface WriteColumns extends Pick<SyncColumns, 'fieldMeta' | 'actor' | 'origin'> {
  spaceId: boolean;
}

/**
 * The column values of one update row, every value JSON-ready (jsonb
 * columns as plain objects). `created_at` is not here: the insert stamps
 * it (see insertMissionUpdate).
 */
export function missionUpdateRow(u: MissionUpdate, cols: WriteColumns): Record<string, unknown> {
  const stamp = u.at.toISOString();
  const stamps = Object.fromEntries(Object.keys(u.data).map((field) => [field, stamp]));
  return {
    app_id: MISSIONS.appId,
    table_name: MISSIONS.tableName,
    record_id: u.missionId,
    user_id: u.userId,
    op: 'update',
    data: u.data,
    [cols.fieldMeta ? 'field_meta' : 'field_timestamps']: stamps,
    client_id: RUNNER_CLIENT_ID,
    ...(cols.actor ? { actor: u.actor } : {}),
    ...(cols.origin ? { origin: AGENT_ORIGIN } : {}),
    ...(cols.spaceId && u.spaceId !== null ? { space_id: u.spaceId } : {}),
  };
}
