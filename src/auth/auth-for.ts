/**
 * The user authentication a configuration asks for: mana-auth's JWKS with
 * issuer and audience, or (dev mode without a JWKS) HS256 tokens under a dev
 * secret generated once and shared by every instance on the database.
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import type { Sql } from '../db/pool.js';
import { getOrCreateSetting } from '../db/settings.js';
import type { Logger } from '../log.js';
import { createUserAuth, type UserAuth } from './user-auth.js';

const DEV_SECRET_KEY = 'dev_jwt_secret';

export interface AuthSetup {
  auth: UserAuth;
  /** Set only in dev mode without a JWKS: the secret the dev routes sign with. */
  devSecret: Uint8Array | undefined;
}

export async function authFor(config: Config, sql: Sql, log: Logger): Promise<AuthSetup> {
  const { jwksUrl, issuer, audience } = config.jwt;
  if (jwksUrl) return { auth: createUserAuth({ jwksUrl, issuer, audience, log: log.child({ component: 'auth' }) }), devSecret: undefined };
  // config.ts requires JWKS_URL in production; this guards a Config built by hand.
  if (!config.devDefaults) throw new Error('JWKS_URL: expected the JWKS URL of mana-auth outside dev mode');
  const devSecret = Buffer.from(await getOrCreateSetting(sql, DEV_SECRET_KEY, () => randomBytes(32).toString('base64')), 'base64');
  return { auth: createUserAuth({ devSecret }), devSecret };
}
