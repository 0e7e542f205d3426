/**
 * When an occurrence waits for a device (no party can plan it now) and how
 * long until it is routed again. Pure.
 */

import { reason } from './reasons.js';

export const WAIT_REASON = reason('no-planner', 'no device answered and server planning is off (MANA_LLM_URL unset)');

/** Retry delay for an occurrence waiting on a device: 1 min doubling to 1 h. */
export function waitBackoffMs(attempts: number): number {
  return Math.min(60_000 * 2 ** Math.max(0, attempts), 3_600_000);
}
