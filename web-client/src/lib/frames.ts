/**
 * Reading the coordinator's WebSocket frames (a tab's socket; the service
 * worker never loads this). Anything malformed yields `null`.
 */
import type { ServerFrame } from '../protocol.js';
import { isRecord, isUuid, nonEmptyString, parseJson, parseNudge } from './nudge.js';

/** When a socket's token expires, as auth-ok and reauth-ok say it. */
function expiry(value: Record<string, unknown>): { expiresAt?: string; expiresInMs?: number } {
  const { expiresAt, expiresInMs } = value;
  return {
    ...(typeof expiresAt === 'string' ? { expiresAt } : {}),
    ...(typeof expiresInMs === 'number' && expiresInMs >= 0 ? { expiresInMs } : {}),
  };
}

/** A server WebSocket frame from its text, or `null` when it is not one we know. */
export function parseServerFrame(text: string): ServerFrame | null {
  const value = parseJson(text);
  if (!isRecord(value)) return null;
  switch (value['type']) {
    case 'auth-ok':
      return typeof value['userId'] === 'string' && typeof value['deviceId'] === 'string'
        ? { type: 'auth-ok', userId: value['userId'], deviceId: value['deviceId'], ...expiry(value) }
        : null;
    case 'reauth-ok':
      return { type: 'reauth-ok', ...expiry(value) };
    case 'mission-due':
      return parseNudge(value);
    case 'mission-changed': {
      const { missionId, iterationId } = value;
      if (!nonEmptyString(missionId)) return null;
      return { type: 'mission-changed', missionId, ...(isUuid(iterationId) ? { iterationId } : {}) };
    }
    case 'claim-result': {
      const { iterationId, granted, leaseExpiresAt, reason } = value;
      if (typeof iterationId !== 'string' || typeof granted !== 'boolean') return null;
      return {
        type: 'claim-result',
        iterationId,
        granted,
        ...(typeof leaseExpiresAt === 'string' ? { leaseExpiresAt } : {}),
        ...(typeof reason === 'string' ? { reason } : {}),
      };
    }
    case 'pong':
      return { type: 'pong' };
    case 'error':
      return {
        type: 'error',
        code: typeof value['code'] === 'string' ? value['code'] : 'unknown',
        message: typeof value['message'] === 'string' ? value['message'] : '',
      };
    default:
      return null;
  }
}
