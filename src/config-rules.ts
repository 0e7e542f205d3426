/**
 * The rules that make a production configuration fail closed, and the mode
 * they apply to. Pure functions over the parsed environment, called by
 * loadConfig before anything connects anywhere; each problem is one line
 * naming the variable, never echoing a secret.
 */
import { validateVapidKeys } from './nudge/vapid.js';

export const DEFAULT_SERVICE_KEY = 'dev-service-key';

/** The part of the parsed environment these rules read. */
export interface RuleInput {
  NODE_ENV: 'development' | 'production' | 'test';
  DEV_MODE: boolean;
  databaseUrl: string | undefined;
  MANA_SERVICE_KEY: string;
  JWKS_URL?: string | undefined;
  JWT_ISSUER?: string | undefined;
  JWT_AUDIENCE?: string | undefined;
  MANA_LLM_URL?: string | undefined;
  VAPID_PUBLIC_KEY?: string | undefined;
  VAPID_PRIVATE_KEY?: string | undefined;
}

/**
 * 'dev' turns on the dev conveniences (dev tokens and routes, the default
 * service key, creating sync_changes). Only the embedded database or an
 * explicit DEV_MODE=1 asks for them: a real database URL without DEV_MODE is
 * production whatever NODE_ENV says, so a forgotten NODE_ENV cannot put dev
 * behaviour in front of mana-sync's data.
 */
export function modeOf(e: Pick<RuleInput, 'NODE_ENV' | 'DEV_MODE' | 'databaseUrl'>): 'dev' | 'production' {
  if (e.NODE_ENV === 'production') return 'production';
  return e.DEV_MODE || !e.databaseUrl ? 'dev' : 'production';
}

/** True for hosts a sidecar answers on: plain http to them never leaves the machine or pod. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function httpsOrLoopback(url: string): boolean {
  const u = new URL(url);
  return u.protocol === 'https:' || isLoopbackHost(u.hostname);
}

/** Every problem of this configuration, one line each. */
export function configProblems(e: RuleInput): string[] {
  const problems: string[] = [];
  if (e.VAPID_PUBLIC_KEY && e.VAPID_PRIVATE_KEY) {
    const v = validateVapidKeys(e.VAPID_PUBLIC_KEY, e.VAPID_PRIVATE_KEY);
    if (!v.ok) problems.push(`VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY: ${v.reason}`);
  } else if (Boolean(e.VAPID_PUBLIC_KEY) !== Boolean(e.VAPID_PRIVATE_KEY)) {
    problems.push('VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY: expected both or neither');
  }
  if (modeOf(e) === 'production') problems.push(...productionProblems(e));
  return problems;
}

function productionProblems(e: RuleInput): string[] {
  // Says why production rules apply when NODE_ENV does not say production.
  const why = e.NODE_ENV === 'production' ? 'in production' : 'with SYNC_DATABASE_URL set and no DEV_MODE=1 (production)';
  const problems: string[] = [];
  if (e.NODE_ENV === 'production' && e.DEV_MODE) problems.push('DEV_MODE: expected unset in production (NODE_ENV=production)');
  if (!e.databaseUrl) problems.push('SYNC_DATABASE_URL: expected a database URL in production (the embedded Postgres is for development only)');
  if (e.MANA_SERVICE_KEY === DEFAULT_SERVICE_KEY) problems.push(`MANA_SERVICE_KEY: expected a real secret ${why} (got the development default)`);
  for (const name of ['JWKS_URL', 'JWT_ISSUER', 'JWT_AUDIENCE'] as const) {
    if (!e[name]) problems.push(`${name}: expected a value ${why}: tokens are verified against mana-auth's JWKS, issuer and audience`);
  }
  for (const name of ['JWKS_URL', 'MANA_LLM_URL'] as const) {
    const url = e[name];
    if (url && !httpsOrLoopback(url)) problems.push(`${name}: expected an https: URL ${why} (plain http only to a loopback host)`);
  }
  return problems;
}
