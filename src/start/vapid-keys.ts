/**
 * Which VAPID keys this coordinator pushes with. Configured keys (validated
 * by config.ts) win; dev mode generates a pair once and keeps it in the
 * database, because subscriptions are bound to the public key and must
 * survive restarts; production without keys runs without Web Push.
 */
import type { Config } from '../config.js';
import type { Sql } from '../db/pool.js';
import { getOrCreateSetting } from '../db/settings.js';
import type { Logger } from '../log.js';
import { generateVapidKeys, type VapidKeyPair } from '../nudge/vapid.js';

const DEV_VAPID_KEY = 'dev_vapid_keys';

export async function vapidKeys(config: Config, sql: Sql, log: Logger): Promise<VapidKeyPair | undefined> {
  const { publicKey, privateKey } = config.vapid;
  if (publicKey && privateKey) return { publicKey, privateKey };
  if (config.mode === 'production') {
    log.warn('VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY are not set: Web Push is off; devices are reached over WebSocket only');
    return undefined;
  }
  return getOrCreateSetting(sql, DEV_VAPID_KEY, generateVapidKeys);
}
