/**
 * Parsing what arrives from the coordinator, without zod (the browser bundle
 * stays dependency-free). Anything malformed yields `null`: a nudge is only a
 * hint, so a bad one is dropped, never thrown.
 */
import type { MissionDue } from '../protocol.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The value `text` holds as JSON, or undefined when it is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function nonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

/** True for a canonical (8-4-4-4-12 hex) UUID, as the server derives iteration ids. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/**
 * A `mission-due` nudge from a WebSocket frame or a push payload (already
 * JSON-decoded), or `null` when it is not one.
 */
export function parseNudge(value: unknown): MissionDue | null {
  if (!isRecord(value) || value['type'] !== 'mission-due') return null;
  const { missionId, iterationId, dueAt, attempt } = value;
  if (!nonEmptyString(missionId) || !isUuid(iterationId) || !nonEmptyString(dueAt)) return null;
  // The offer count: a higher one than a device answered is the server offering it again.
  return Number.isInteger(attempt) && (attempt as number) >= 1
    ? { type: 'mission-due', missionId, iterationId, dueAt, attempt: attempt as number }
    : { type: 'mission-due', missionId, iterationId, dueAt };
}
