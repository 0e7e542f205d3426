/**
 * Values generated once and shared by every instance on one database (dev
 * JWT secret, dev VAPID keys). The first instance's insert wins; everyone
 * reads the winner.
 */
import type { Sql } from './pool.js';

export async function getOrCreateSetting<T>(sql: Sql, key: string, create: () => T): Promise<T> {
  await sql`
    INSERT INTO mana_ai.settings (key, value) VALUES (${key}, ${sql.json(create() as never)})
    ON CONFLICT (key) DO NOTHING`;
  const [row] = await sql<{ value: T }[]>`SELECT value FROM mana_ai.settings WHERE key = ${key}`;
  if (!row) throw new Error(`setting ${key} vanished right after it was written`);
  return row.value;
}
