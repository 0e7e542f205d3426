/**
 * The Mission record of app `ai`, table `aiMissions` (docs/contract.md §2), as the
 * projection yields it. Records come from users' devices, so every field is
 * treated as untrusted: readers go through the narrow accessors below.
 */

export type Cadence =
  | { kind: 'manual' }
  | { kind: 'interval'; everyMinutes: number }
  | { kind: 'daily'; atHour: number; atMinute: number }
  | { kind: 'weekly'; dayOfWeek: number; atHour: number }
  | { kind: 'cron'; expression: string };

export type MissionState = 'active' | 'paused' | 'done' | 'archived';

export type PlanStepStatus = 'planned' | 'staged' | 'approved' | 'rejected' | 'skipped' | 'failed';

export interface PlanStep {
  id: string;
  summary: string;
  intent: { kind: 'toolCall'; toolName: string; params: Record<string, unknown> } | { kind: 'note'; body: string };
  proposalId?: string;
  status: PlanStepStatus;
  rationale?: string;
}

export type IterationStatus = 'running' | 'awaiting-review' | 'approved' | 'rejected' | 'failed';

export interface MissionIteration {
  id: string;
  startedAt: string;
  finishedAt?: string;
  plan: PlanStep[];
  summary?: string;
  userFeedback?: string;
  overallStatus: IterationStatus;
  source?: 'browser' | 'server';
}

export interface MissionInputRef {
  module: string;
  table: string;
  id: string;
}

export interface Mission {
  id: string;
  createdAt?: string;
  updatedAt?: string;
  title?: string;
  conceptMarkdown?: string;
  objective?: string;
  inputs?: MissionInputRef[];
  cadence?: Cadence;
  state?: MissionState;
  nextRunAt?: string;
  iterations?: MissionIteration[];
  timezone?: string;
  userId?: string;
  deletedAt?: string | null;
  [field: string]: unknown;
}

/** Prefix of values the webapp encrypted on the device; the server cannot read them. */
export const ENCRYPTED_PREFIX = 'enc:1:';

export function isEncrypted(value: unknown): boolean {
  return typeof value === 'string' && value.startsWith(ENCRYPTED_PREFIX);
}

/** The iterations array of a record, tolerating anything a device may have written. */
export function iterationsOf(record: Record<string, unknown>): MissionIteration[] {
  const its = record['iterations'];
  if (!Array.isArray(its)) return [];
  return its.filter(
    (it): it is MissionIteration => typeof it === 'object' && it !== null && typeof (it as { id?: unknown }).id === 'string',
  );
}
