/**
 * The occurrence endpoints (`POST /v1/occurrences/:iterationId/claim|complete|release`)
 * and how their answers are read.
 */
import { ApiError, errorOf, type Api, type ApiResponse } from './http.js';
import { toError } from './timeout.js';

export type ClaimOutcome =
  | { kind: 'granted'; leaseExpiresAt?: string }
  /** 409 held by another party, 410 completed/superseded, 404 unknown: not ours to plan. */
  | { kind: 'elsewhere'; status: number; code: string }
  /** No decision (network, 5xx, 401…): nobody learned anything; a later nudge may retry. */
  | { kind: 'failed'; error: Error };

/** Reads a claim answer (pure). */
export function classifyClaim(res: ApiResponse): ClaimOutcome {
  const err = errorOf(res.body);
  if (res.status === 409 || res.status === 410 || res.status === 404) {
    return { kind: 'elsewhere', status: res.status, code: err?.code ?? `http_${res.status}` };
  }
  if (res.ok) {
    const body = (res.body ?? {}) as { granted?: unknown; leaseExpiresAt?: unknown };
    if (body.granted === false) return { kind: 'elsewhere', status: res.status, code: 'not_granted' };
    return typeof body.leaseExpiresAt === 'string' ? { kind: 'granted', leaseExpiresAt: body.leaseExpiresAt } : { kind: 'granted' };
  }
  return {
    kind: 'failed',
    error: new ApiError(`claim: ${res.status}${err ? ` ${err.code}: ${err.message}` : ''}`, res.status, err?.code ?? `http_${res.status}`),
  };
}

export interface OccurrenceApi {
  claim(iterationId: string): Promise<ClaimOutcome>;
  /** Throws an ApiError on any non-2xx answer. */
  complete(iterationId: string): Promise<void>;
  /** Throws an ApiError on any non-2xx answer. */
  release(iterationId: string, reason?: string): Promise<void>;
}

const path = (iterationId: string, action: string): string => `/v1/occurrences/${encodeURIComponent(iterationId)}/${action}`;

export function createOccurrenceApi(api: Api, deviceId: string): OccurrenceApi {
  return {
    async claim(iterationId) {
      try {
        return classifyClaim(await api.request('POST', path(iterationId, 'claim'), { deviceId }));
      } catch (e: unknown) {
        return { kind: 'failed', error: toError(e) };
      }
    },
    async complete(iterationId) {
      await api.json('POST', path(iterationId, 'complete'), { deviceId });
    },
    async release(iterationId, reason) {
      // The server keeps reasons short; a planner's stack trace is not for it.
      const body = reason === undefined ? { deviceId } : { deviceId, reason: reason.slice(0, 500) };
      await api.json('POST', path(iterationId, 'release'), body);
    },
  };
}
