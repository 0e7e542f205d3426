/**
 * Reading projected missions (the materialized records) for the planner and
 * the dev endpoints.
 */
import type { Sql } from '../db/pool.js';
import type { Mission } from './mission.js';

export async function missionsOfUser(sql: Sql, userId: string, limit = 200): Promise<Mission[]> {
  const rows = await sql<{ record: Mission }[]>`
    SELECT jsonb_build_object('id', mission_id) || fields AS record
    FROM mana_ai.mission_snapshots
    WHERE user_id = ${userId} AND present AND NOT soft_deleted
    ORDER BY updated_at DESC LIMIT ${limit}`;
  return rows.map((r) => r.record);
}

export async function getMission(sql: Sql, userId: string, missionId: string): Promise<Mission | null> {
  const [row] = await sql<{ record: Mission }[]>`
    SELECT jsonb_build_object('id', mission_id) || fields AS record
    FROM mana_ai.mission_snapshots
    WHERE user_id = ${userId} AND mission_id = ${missionId} AND present AND NOT soft_deleted`;
  return row?.record ?? null;
}
