/**
 * Devices' Web Push subscriptions. An endpoint belongs to exactly one user:
 * registering it again under another user moves it, never shares it. A user
 * holds at most `maxPerUser` of them (every nudge fans out to each): the cap
 * is checked and the row written under a per-user advisory lock, so
 * concurrent registrations, on any instance, never exceed it.
 */
import type { Sql } from '../db/pool.js';

export interface StoredSubscription {
  endpoint: string;
  userId: string;
  deviceId: string;
  keys: { p256dh: string; auth: string };
  vapidPublicKey: string | null;
}

/** Default of PUSH_MAX_SUBSCRIPTIONS_PER_USER: a phone, a laptop, a few browsers, with room to spare. */
export const DEFAULT_MAX_SUBSCRIPTIONS_PER_USER = 10;

export type UpsertResult = { created: boolean } | { refused: 'cap'; max: number };

export interface PushSubscriptionStore {
  /** Registers or refreshes; a new endpoint past the user's cap is refused and not stored. */
  upsert(s: StoredSubscription & { expirationTime: number | null }): Promise<UpsertResult>;
  removeDevice(userId: string, deviceId: string): Promise<number>;
  removeEndpoint(endpoint: string): Promise<void>;
  forUser(userId: string): Promise<StoredSubscription[]>;
  counts(userIds: string[], vapidPublicKey: string): Promise<Map<string, number>>;
  markSuccess(endpoint: string): Promise<void>;
  markFailure(endpoint: string): Promise<void>;
}

export function createPushSubscriptionStore(sql: Sql, opts: { maxPerUser?: number } = {}): PushSubscriptionStore {
  const maxPerUser = opts.maxPerUser ?? DEFAULT_MAX_SUBSCRIPTIONS_PER_USER;
  return {
    upsert: (s) =>
      sql.begin(async (tx): Promise<UpsertResult> => {
        await tx`SELECT pg_advisory_xact_lock(hashtext('mana_ai:push-subscriptions'), hashtext(${s.userId}))`;
        // Expired subscriptions never receive a push again; they make room instead of counting.
        await tx`DELETE FROM mana_ai.push_subscriptions WHERE user_id = ${s.userId} AND expiration_time <= now()`;
        const [held] = await tx<{ n: number }[]>`
          SELECT count(*)::int AS n FROM mana_ai.push_subscriptions WHERE user_id = ${s.userId} AND endpoint <> ${s.endpoint}`;
        if ((held?.n ?? 0) >= maxPerUser) return { refused: 'cap', max: maxPerUser };
        const [row] = await tx<{ created: boolean }[]>`
        INSERT INTO mana_ai.push_subscriptions (endpoint, user_id, device_id, p256dh, auth, expiration_time, vapid_public_key)
        VALUES (${s.endpoint}, ${s.userId}, ${s.deviceId}, ${s.keys.p256dh}, ${s.keys.auth},
                ${s.expirationTime === null ? null : new Date(s.expirationTime)}, ${s.vapidPublicKey})
        ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, device_id = excluded.device_id,
          p256dh = excluded.p256dh, auth = excluded.auth, expiration_time = excluded.expiration_time,
          vapid_public_key = excluded.vapid_public_key, failures = 0, updated_at = now()
        RETURNING (xmax = 0) AS created`;
        return { created: Boolean(row?.created) };
      }),
    async removeDevice(userId, deviceId) {
      const r = await sql`DELETE FROM mana_ai.push_subscriptions WHERE user_id = ${userId} AND device_id = ${deviceId}`;
      return r.count;
    },
    async removeEndpoint(endpoint) {
      await sql`DELETE FROM mana_ai.push_subscriptions WHERE endpoint = ${endpoint}`;
    },
    async forUser(userId) {
      const rows = await sql<{ endpoint: string; userId: string; deviceId: string; p256dh: string; auth: string; vapidPublicKey: string | null }[]>`
        SELECT endpoint, user_id AS "userId", device_id AS "deviceId", p256dh, auth, vapid_public_key AS "vapidPublicKey"
        FROM mana_ai.push_subscriptions
        WHERE user_id = ${userId} AND (expiration_time IS NULL OR expiration_time > now())`;
      return rows.map((r) => ({ endpoint: r.endpoint, userId: r.userId, deviceId: r.deviceId, keys: { p256dh: r.p256dh, auth: r.auth }, vapidPublicKey: r.vapidPublicKey }));
    },
    async counts(userIds, vapidPublicKey) {
      if (userIds.length === 0) return new Map();
      // A subscription made for another VAPID key would be refused by the push service.
      const rows = await sql<{ userId: string; n: number }[]>`
        SELECT user_id AS "userId", count(*)::int AS n FROM mana_ai.push_subscriptions
        WHERE user_id = ANY(${userIds}::text[]) AND (vapid_public_key IS NULL OR vapid_public_key = ${vapidPublicKey})
          AND (expiration_time IS NULL OR expiration_time > now())
        GROUP BY user_id`;
      return new Map(rows.map((r) => [r.userId, r.n]));
    },
    async markSuccess(endpoint) {
      await sql`UPDATE mana_ai.push_subscriptions SET last_success_at = now(), failures = 0 WHERE endpoint = ${endpoint}`;
    },
    async markFailure(endpoint) {
      await sql`UPDATE mana_ai.push_subscriptions SET last_failure_at = now(), failures = failures + 1 WHERE endpoint = ${endpoint}`;
    },
  };
}
