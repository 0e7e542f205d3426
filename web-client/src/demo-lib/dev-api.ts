/**
 * The dev-default endpoints the demo uses: a token for a chosen user, and the
 * mana-sync-shaped endpoints that write real `sync_changes` rows and read the
 * projected missions.
 */
import type { Mission } from '../../../src/projection/mission.js';
import { createApi, jwtClaims, type Api } from '../lib/http.js';

export type { Mission };

export interface SyncChange {
  appId: string;
  tableName: string;
  recordId: string;
  op: 'insert' | 'update' | 'delete';
  data: Record<string, unknown> | null;
  /** Each updated field's stamp (an ISO string), as mana-sync stores it. */
  fieldMeta?: Record<string, string>;
}

/** A dev token for `userId` (unauthenticated; dev default only), living `ttlSec` when given (tests of expiring sessions). */
export async function fetchDevToken(baseUrl: string, userId: string, ttlSec?: number): Promise<string> {
  const api = createApi({ baseUrl });
  const body = await api.json<{ token?: unknown }>('POST', '/dev/token', ttlSec ? { userId, ttlSec } : { userId }, { auth: false });
  if (typeof body?.token !== 'string') throw new Error('POST /dev/token returned no token');
  return body.token;
}

/** Seconds-since-epoch `exp` of a JWT, without verifying it (only to refresh early). */
export function tokenExpiry(token: string): number | undefined {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === 'number' ? exp : undefined;
}

export interface DevApi {
  api: Api;
  postChanges(changes: SyncChange[]): Promise<void>;
  missions(): Promise<Mission[]>;
  mission(id: string): Promise<Mission | undefined>;
  /** The user's occurrences, `mine` set for those `deviceId` holds. */
  occurrences(deviceId: string): Promise<OccurrenceRow[]>;
}

/** A row of `GET /v1/occurrences`. */
export interface OccurrenceRow {
  iterationId: string;
  missionId: string;
  dueAt: string;
  status: string;
  channel?: string | null;
  /** The kind of party that holds it. */
  claimedBy?: 'device' | 'server' | null;
  /** This device holds it. */
  mine?: boolean;
  deadlineAt?: string | null;
  leaseExpiresAt?: string | null;
  attempts?: number;
  reason?: { code: string; message: string } | null;
}

export function createDevApi(baseUrl: string, getToken: () => Promise<string>): DevApi {
  const api = createApi({ baseUrl, getToken });
  async function missions(): Promise<Mission[]> {
    const body = await api.json<unknown>('GET', '/dev/sync/missions');
    // Tolerate `{ missions: [...] }` as well as a bare array.
    const list = Array.isArray(body) ? body : (body as { missions?: unknown } | undefined)?.missions;
    return Array.isArray(list) ? (list.filter((m) => typeof m === 'object' && m !== null && typeof (m as { id?: unknown }).id === 'string') as Mission[]) : [];
  }
  return {
    api,
    async postChanges(changes) {
      await api.json('POST', '/dev/sync/changes', { changes });
    },
    missions,
    async mission(id) {
      return (await missions()).find((m) => m.id === id);
    },
    async occurrences(deviceId) {
      const body = await api.json<unknown>('GET', `/v1/occurrences?deviceId=${encodeURIComponent(deviceId)}`);
      const list = Array.isArray(body) ? body : (body as { occurrences?: unknown } | undefined)?.occurrences;
      return Array.isArray(list) ? (list as OccurrenceRow[]) : [];
    },
  };
}
