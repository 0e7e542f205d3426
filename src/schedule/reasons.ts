/**
 * Why an occurrence is where it is, in two forms: a stable code with a fixed
 * message, which its user sees (GET /v1/occurrences), and a detail for
 * operators (`last_error`, GET /internal/occurrences), which may name hosts,
 * devices, LLM replies or decrypted text and so never leaves the service.
 */

export const REASONS = {
  'no-device': 'None of your devices could be reached, so the server plans it.',
  'no-claim': 'No device took it in time, so the server plans it.',
  'device-released': 'Your device gave it back, so the server plans it.',
  'device-plan-failed': 'Planning on your device failed, so the server plans it.',
  'device-plan-timeout': 'Planning on your device took too long, so the server plans it.',
  'device-cancelled': 'Your device stopped planning it (signed out or closed), so the server plans it.',
  'lease-expired': 'The device that took it stopped answering.',
  'no-planner': 'No device answered and the server does not plan; waiting for one of your devices.',
  encrypted: 'The mission is end-to-end encrypted: only one of your devices can plan it.',
  'plan-budget': "Today's server plans for your account are used up; waiting for a device or a free slot.",
  'agent-paused': "The mission's agent is paused.",
  'agent-archived': "The mission's agent is archived.",
  'agent-deleted': "The mission's agent was deleted.",
  'agent-encrypted': "The mission's agent keeps its rules end-to-end encrypted: only one of your devices can plan it.",
  'agent-concurrency': "The mission's agent is already running as many server plans as it may at once; waiting for one to finish or for a device.",
  'agent-tokens': "The mission's agent has used its daily token budget; waiting for a device or for the budget to free up.",
  'plan-retry': 'Server planning failed; it will try again.',
  'plan-failed': 'Server planning failed; the mission shows a failed iteration.',
  'plan-unwritable': 'Server planning failed and its result could not be saved; one of your devices can plan the mission.',
  'mission-deleted': 'The mission was deleted.',
  'mission-inactive': 'The mission was paused, finished or archived.',
  'mission-rescheduled': 'The mission was rescheduled.',
} as const satisfies Record<string, string>;

export type ReasonCode = keyof typeof REASONS;

/**
 * Why an occurrence was superseded because its mission's agent stopped: the
 * mission is due again, with the same occurrence, once the agent resumes.
 */
export const AGENT_HELD_REASONS = ['agent-paused', 'agent-archived', 'agent-deleted'] as const satisfies readonly ReasonCode[];

/** AGENT_HELD_REASONS as an SQL list (our constants, never user data); the partial index occurrences_agent_held_idx names the same. */
export const AGENT_HELD_SQL = AGENT_HELD_REASONS.map((r) => `'${r}'`).join(', ');

/** A reason as the ledger stores it: the public code and the operators' detail. */
export interface Reason {
  code: ReasonCode;
  detail: string;
}

export const reason = (code: ReasonCode, detail: string = REASONS[code]): Reason => ({ code, detail });

/** The user's view of a stored code; an unknown one (a newer instance's) shows as nothing rather than as itself. */
export function publicReason(code: string | null): { code: ReasonCode; message: string } | null {
  if (code === null || !Object.hasOwn(REASONS, code)) return null;
  return { code: code as ReasonCode, message: REASONS[code as ReasonCode] };
}

/**
 * What a device may say when it gives an occurrence back: a code from this
 * fixed set, never its planner's error text (for an encrypted mission that
 * text may hold decrypted content). Each maps to the reason its user sees.
 */
export const RELEASE_CODES = {
  'plan-failed': 'device-plan-failed',
  'plan-timeout': 'device-plan-timeout',
  cancelled: 'device-cancelled',
} as const satisfies Record<string, ReasonCode>;

export type ReleaseCode = keyof typeof RELEASE_CODES;
