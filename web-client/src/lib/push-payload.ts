/**
 * Reading a push message's data in the service worker (a tab never loads
 * this): one nudge, or several missions of one user due together. Anything
 * malformed is dropped, never thrown.
 */
import type { MissionDue } from '../protocol.js';
import { isRecord, parseJson, parseNudge } from './nudge.js';

/**
 * Every nudge a push message names: the `missions` list when the server
 * grouped several occurrences due together (malformed entries dropped),
 * else the single top-level nudge; empty when it names none. Tolerates
 * non-JSON payloads.
 */
export function parsePushNudges(text: string): MissionDue[] {
  const value = parseJson(text);
  const single = parseNudge(value);
  const list = isRecord(value) && Array.isArray(value['missions']) ? value['missions'] : null;
  if (single === null || list === null) return single === null ? [] : [single];
  const seen = new Set<string>();
  const nudges: MissionDue[] = [];
  for (const entry of list) {
    const nudge = parseNudge(isRecord(entry) ? { ...entry, type: 'mission-due' } : null);
    if (nudge && !seen.has(nudge.iterationId)) {
      seen.add(nudge.iterationId);
      nudges.push(nudge);
    }
  }
  // A list that named nothing usable still carries the top-level nudge.
  return nudges.length > 0 ? nudges : [single];
}

/** A push message's data as a nudge: tolerates non-JSON payloads (→ null). */
export function parseNudgeText(text: string): MissionDue | null {
  return parseNudge(parseJson(text));
}
