/**
 * The occurrence endpoints (`POST /v1/occurrences/:iterationId/claim|complete|release`)
 * as one browsing context calls them, and how their answers are read. Every
 * call names the device and this context: the server grants one context, so
 * two tabs (or a tab and the service worker) of one browser are never both
 * granted, and a context re-claiming what it holds renews its lease.
 */
import { unexpected, type Api, type ApiResponse } from './http.js';
import { toError } from './timeout.js';

export type ClaimOutcome =
  /** Done: a claim granted (with the lease left, when the server says), a complete or release accepted. */
  | { kind: 'granted'; leaseExpiresAt?: string; leaseMs?: number }
  /** 409 held by another party, 410 completed/superseded, 404 unknown, 403 another user's: not ours; retrying cannot change it. */
  | { kind: 'elsewhere'; status: number; code: string }
  /** No decision (network, timeout, 5xx, 429, 401): nobody learned anything; the same call may be made again. */
  | { kind: 'failed'; error: Error };

/** Why a context gives an occurrence back: a code from the server's fixed set, never the planner's text. */
export type ReleaseCode = 'plan-failed' | 'plan-timeout' | 'cancelled';

const REFUSED = [403, 404, 409, 410];

/** Reads an answer (pure). */
export function classifyClaim(res: ApiResponse): ClaimOutcome {
  const { status, ok } = res;
  if (ok) {
    const { granted, leaseExpiresAt, leaseMs } = (res.body ?? {}) as { granted?: unknown; leaseExpiresAt?: unknown; leaseMs?: unknown };
    if (granted === false) return { kind: 'elsewhere', status, code: 'not_granted' };
    return {
      kind: 'granted',
      ...(typeof leaseExpiresAt === 'string' ? { leaseExpiresAt } : {}),
      ...(typeof leaseMs === 'number' ? { leaseMs } : {}),
    };
  }
  const error = unexpected('occurrence', res);
  return REFUSED.includes(status) ? { kind: 'elsewhere', status, code: error.code } : { kind: 'failed', error };
}

export interface OccurrenceApi {
  claim(iterationId: string): Promise<ClaimOutcome>;
  complete(iterationId: string): Promise<ClaimOutcome>;
  /** `note`: a short text without content (an error's name, a duration), for operators. */
  release(iterationId: string, code: ReleaseCode, note?: string): Promise<ClaimOutcome>;
}

const path = (iterationId: string, action: string): string => `/v1/occurrences/${encodeURIComponent(iterationId)}/${action}`;

/** A context id: letters and digits, unique enough among one browser's contexts. */
export function newContextId(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36)}`;
}

export function createOccurrenceApi(api: Api, deviceId: string, contextId: string): OccurrenceApi {
  async function call(iterationId: string, action: string, extra: Record<string, string> = {}): Promise<ClaimOutcome> {
    try {
      return classifyClaim(await api.request('POST', path(iterationId, action), { deviceId, contextId, ...extra }));
    } catch (e: unknown) {
      return { kind: 'failed', error: toError(e) };
    }
  }
  return {
    claim: (id) => call(id, 'claim'),
    complete: (id) => call(id, 'complete'),
    release: (id, code, note) => call(id, 'release', note ? { code, reason: note.slice(0, 100) } : { code }),
  };
}
