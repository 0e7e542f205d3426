/**
 * Live sockets across instances: one row per authenticated socket, written
 * on connect, refreshed by the owning instance's heartbeat, removed on
 * close. Rows of an instance that stops heart-beating are ignored once older
 * than the TTL and swept by any instance.
 */
import type { Sql } from '../db/pool.js';

export interface PresenceStore {
  add(conn: { connId: string; userId: string; deviceId: string }): Promise<void>;
  remove(connId: string): Promise<void>;
  /** Refreshes every row of this instance; returns how many. */
  heartbeat(): Promise<number>;
  /** Users (of the given ones) with at least one live socket on any instance. */
  liveUsers(userIds: string[]): Promise<Set<string>>;
  /** Users (of the given ones) with a live socket on another instance: the ones a NOTIFY must reach. */
  elsewhere(userIds: string[]): Promise<Set<string>>;
  /** Deletes rows whose instance stopped heart-beating. */
  sweep(): Promise<number>;
  /** Removes every row of this instance (shutdown). */
  clear(): Promise<void>;
}

export function createPresenceStore(deps: { sql: Sql; instanceId: string; ttlMs: number }): PresenceStore {
  const { sql, instanceId } = deps;
  const ttlSecs = deps.ttlMs / 1000;
  return {
    async add(conn) {
      await sql`
        INSERT INTO mana_ai.presence (instance_id, conn_id, user_id, device_id)
        VALUES (${instanceId}, ${conn.connId}, ${conn.userId}, ${conn.deviceId})
        ON CONFLICT (instance_id, conn_id) DO UPDATE SET heartbeat_at = now()`;
    },
    async remove(connId) {
      await sql`DELETE FROM mana_ai.presence WHERE instance_id = ${instanceId} AND conn_id = ${connId}`;
    },
    async heartbeat() {
      const r = await sql`UPDATE mana_ai.presence SET heartbeat_at = now() WHERE instance_id = ${instanceId}`;
      return r.count;
    },
    async liveUsers(userIds) {
      if (userIds.length === 0) return new Set();
      const rows = await sql<{ userId: string }[]>`
        SELECT DISTINCT user_id AS "userId" FROM mana_ai.presence
        WHERE user_id = ANY(${userIds}::text[]) AND heartbeat_at > now() - make_interval(secs => ${ttlSecs})`;
      return new Set(rows.map((r) => r.userId));
    },
    async elsewhere(userIds) {
      if (userIds.length === 0) return new Set();
      const rows = await sql<{ userId: string }[]>`
        SELECT DISTINCT user_id AS "userId" FROM mana_ai.presence
        WHERE user_id = ANY(${userIds}::text[]) AND instance_id <> ${instanceId}
          AND heartbeat_at > now() - make_interval(secs => ${ttlSecs})`;
      return new Set(rows.map((r) => r.userId));
    },
    async sweep() {
      const r = await sql`DELETE FROM mana_ai.presence WHERE heartbeat_at < now() - make_interval(secs => ${ttlSecs})`;
      return r.count;
    },
    async clear() {
      await sql`DELETE FROM mana_ai.presence WHERE instance_id = ${instanceId}`;
    },
  };
}
