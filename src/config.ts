/**
 * The one reader of `process.env`. Every setting is parsed and validated
 * here, once, into a typed Config; a bad value stops startup with one line
 * per problem naming the variable and what was expected.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';

export const DEFAULT_SERVICE_KEY = 'dev-service-key';
export const DEFAULT_PUSH_ALLOWLIST = '*.googleapis.com,*.push.services.mozilla.com,*.notify.windows.com,*.push.apple.com';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], { message: 'expected true or false' })
  .transform((v) => ['true', '1', 'yes', 'on'].includes(v));
/** Decimal digits only: z.coerce.number would read "0x50" as 80 and "1e3" as 1000. */
const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\s*-?\d+\s*$/, { message: 'expected an integer' })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, { message: `expected an integer >= ${min}` })
        .max(max, { message: `expected an integer <= ${max}` }),
    );
/** A URL of one of the given schemes: "llm:8080" parses as a URL but is a typo for http://llm:8080. */
const urlOf = (protocols: string[], expected: string) =>
  z.string().refine(
    (v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    { message: `expected ${expected}` },
  );
const optional = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === '' ? undefined : v), schema.optional());
const optionalHttpUrl = optional(urlOf(['http:', 'https:'], 'an http(s) URL'));
const optionalPgUrl = optional(urlOf(['postgres:', 'postgresql:'], 'a postgres:// URL'));
const optionalString = z.preprocess((v) => (v === '' ? undefined : v), z.string().optional());

const timeZone = z.string().refine(
  (tz) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected an IANA time zone such as UTC or Europe/Berlin' },
);

const EnvSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test'], { message: 'expected development, production or test' }).default('development'),
  PORT: int(0, 65535).default(3066),
  HOST: z.string().default('0.0.0.0'),
  SYNC_DATABASE_URL: optionalPgUrl,
  DATABASE_URL: optionalPgUrl,
  SYNC_WRITER_ROLE: optionalString,
  DB_POOL_MAX: int(2, 100).default(10),
  EMBEDDED_PG_DIR: z.string().default('.data/pg'),
  EMBEDDED_PG_PORT: int(1, 65535).default(54329),
  MANA_LLM_URL: optionalHttpUrl,
  MANA_LLM_MODEL: z.string().default('mana-default'),
  MANA_SERVICE_KEY: z.string().min(8, { message: 'expected at least 8 characters' }).default(DEFAULT_SERVICE_KEY),
  TICK_INTERVAL_MS: int(50, 3_600_000).default(1000),
  TICK_ENABLED: bool.default(true),
  PROJECTION_BATCH_ROWS: int(100, 100_000).default(5000),
  PROJECTION_CACHE_RECORDS: int(100, 10_000_000).default(50_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { message: 'expected a pino level' }).default('info'),
  LOG_PRETTY: bool.optional(),
  INSTANCE_ID: optionalString,
  WS_CLAIM_TIMEOUT_MS: int(100, 3_600_000).default(20_000),
  PUSH_CLAIM_TIMEOUT_MS: int(100, 3_600_000).default(120_000),
  CLAIM_LEASE_MS: int(100, 86_400_000).default(600_000),
  PRESENCE_TTL_MS: int(1000, 3_600_000).default(60_000),
  WS_AUTH_TIMEOUT_MS: int(100, 600_000).default(5_000),
  HTTP_HEADERS_TIMEOUT_MS: int(100, 600_000).default(10_000),
  HTTP_REQUEST_TIMEOUT_MS: int(100, 3_600_000).default(30_000),
  PUSH_TIMEOUT_MS: int(100, 600_000).default(10_000),
  JWKS_URL: optionalHttpUrl,
  JWT_ISSUER: optionalString,
  JWT_AUDIENCE: optionalString,
  VAPID_PUBLIC_KEY: optionalString,
  VAPID_PRIVATE_KEY: optionalString,
  VAPID_SUBJECT: z
    .string()
    .regex(/^(mailto:|https:)/, { message: 'expected a mailto: or https: URL' })
    .default('mailto:ops@mana.how'),
  PUSH_ENDPOINT_ALLOWLIST: z.string().default(DEFAULT_PUSH_ALLOWLIST),
  PLANNER_TIMEOUT_MS: int(1000, 3_600_000).default(120_000),
  PLANNER_CONCURRENCY: int(1, 256).default(4),
  PLANNER_MAX_ATTEMPTS: int(1, 20).default(3),
  PLANNER_RETRY_BACKOFF_MS: z
    .string()
    .regex(/^\d+(,\d+)*$/, { message: 'expected comma-separated milliseconds, e.g. 60000,300000,1800000' })
    .default('60000,300000,1800000')
    .transform((v) => v.split(',').map(Number)),
  PLANNER_MAX_RETRIES: int(0, 10).default(3),
  DEFAULT_TIMEZONE: timeZone.default('UTC'),
  RATE_LIMIT_PER_MINUTE: int(1, 100_000).default(60),
  CORS_ORIGINS: optionalString,
});

export interface Config {
  env: 'development' | 'production' | 'test';
  version: string;
  port: number;
  host: string;
  /** Undefined → the embedded Postgres (dev default only). */
  databaseUrl: string | undefined;
  dbPoolMax: number;
  embedded: { dir: string; port: number };
  /** True when the dev conveniences are on: dev tokens, the demo, the dev sync endpoint. */
  devDefaults: boolean;
  /** Create sync_changes when missing (never in production: mana-sync owns it). */
  devSyncTable: boolean;
  /** Role for per-user writes to sync_changes, so RLS applies even to a BYPASSRLS login. */
  syncWriterRole: string | undefined;
  llm: {
    url: string | undefined;
    model: string;
    timeoutMs: number;
    concurrency: number;
    /** Planning attempts per occurrence before a 'failed' iteration is written. */
    maxAttempts: number;
    /** Waits between planning attempts. */
    retryBackoffMs: number[];
    /** HTTP retries inside one attempt (429, 5xx, timeouts). */
    maxRetries: number;
  };
  serviceKey: string;
  tick: { intervalMs: number; enabled: boolean };
  projection: { batchRows: number; cacheRecords: number };
  /** pretty undefined: readable lines on a terminal, JSON otherwise. */
  log: { level: string; pretty: boolean | undefined };
  instanceId: string;
  claims: { wsTimeoutMs: number; pushTimeoutMs: number; leaseMs: number };
  presenceTtlMs: number;
  /** A socket that sends no auth frame within this long is closed (4408). */
  wsAuthTimeoutMs: number;
  /** A connection that has not sent complete headers / a complete request within these is closed (slow clients). */
  http: { headersTimeoutMs: number; requestTimeoutMs: number };
  jwt: { jwksUrl: string | undefined; issuer: string | undefined; audience: string | undefined };
  vapid: { publicKey: string | undefined; privateKey: string | undefined; subject: string };
  pushAllowlist: string;
  /** Per Web Push request attempt. */
  pushTimeoutMs: number;
  defaultTimeZone: string;
  rateLimitPerMinute: number;
  /** Origins allowed to call /v1/* and /dev/* from a browser; empty → same-origin only. */
  corsOrigins: string[];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment into a Config, or throws ConfigError listing every problem. */
export function loadConfig(env: Record<string, string | undefined> = process.env, version = '0.0.0'): Config {
  // An empty value (PORT= in a compose file) means unset, for every variable
  // alike; read as 0 it would have been a random port.
  const parsed = EnvSchema.safeParse(Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v?.trim() === '' ? undefined : v])));
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => {
        const name = String(i.path[0] ?? '?');
        const got = env[name];
        return `${name}: ${i.message}${got === undefined ? '' : ` (got "${got.length > 40 ? `${got.slice(0, 40)}…` : got}")`}`;
      }),
    );
  }
  const e = parsed.data;
  const databaseUrl = e.SYNC_DATABASE_URL ?? e.DATABASE_URL;
  const problems: string[] = [];
  if (e.NODE_ENV === 'production') {
    if (!databaseUrl) problems.push('SYNC_DATABASE_URL: expected a database URL in production (the embedded Postgres is for development only)');
    if (e.MANA_SERVICE_KEY === DEFAULT_SERVICE_KEY) problems.push('MANA_SERVICE_KEY: expected a real secret in production (got the development default)');
  }
  if (Boolean(e.VAPID_PUBLIC_KEY) !== Boolean(e.VAPID_PRIVATE_KEY)) {
    problems.push('VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY: expected both or neither');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    env: e.NODE_ENV,
    version,
    port: e.PORT,
    host: e.HOST,
    databaseUrl,
    dbPoolMax: e.DB_POOL_MAX,
    embedded: { dir: e.EMBEDDED_PG_DIR, port: e.EMBEDDED_PG_PORT },
    devDefaults: e.NODE_ENV !== 'production' && !e.JWKS_URL,
    devSyncTable: e.NODE_ENV !== 'production',
    syncWriterRole: e.SYNC_WRITER_ROLE ?? (e.NODE_ENV !== 'production' ? 'mana_ai_writer' : undefined),
    llm: {
      url: e.MANA_LLM_URL,
      model: e.MANA_LLM_MODEL,
      timeoutMs: e.PLANNER_TIMEOUT_MS,
      concurrency: e.PLANNER_CONCURRENCY,
      maxAttempts: e.PLANNER_MAX_ATTEMPTS,
      retryBackoffMs: e.PLANNER_RETRY_BACKOFF_MS,
      maxRetries: e.PLANNER_MAX_RETRIES,
    },
    serviceKey: e.MANA_SERVICE_KEY,
    tick: { intervalMs: e.TICK_INTERVAL_MS, enabled: e.TICK_ENABLED },
    projection: { batchRows: e.PROJECTION_BATCH_ROWS, cacheRecords: e.PROJECTION_CACHE_RECORDS },
    log: { level: e.LOG_LEVEL, pretty: e.LOG_PRETTY },
    instanceId: e.INSTANCE_ID ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
    claims: { wsTimeoutMs: e.WS_CLAIM_TIMEOUT_MS, pushTimeoutMs: e.PUSH_CLAIM_TIMEOUT_MS, leaseMs: e.CLAIM_LEASE_MS },
    presenceTtlMs: e.PRESENCE_TTL_MS,
    wsAuthTimeoutMs: e.WS_AUTH_TIMEOUT_MS,
    http: { headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS, requestTimeoutMs: Math.max(e.HTTP_REQUEST_TIMEOUT_MS, e.HTTP_HEADERS_TIMEOUT_MS) },
    jwt: { jwksUrl: e.JWKS_URL, issuer: e.JWT_ISSUER, audience: e.JWT_AUDIENCE },
    vapid: { publicKey: e.VAPID_PUBLIC_KEY, privateKey: e.VAPID_PRIVATE_KEY, subject: e.VAPID_SUBJECT },
    pushAllowlist: e.PUSH_ENDPOINT_ALLOWLIST,
    pushTimeoutMs: e.PUSH_TIMEOUT_MS,
    defaultTimeZone: e.DEFAULT_TIMEZONE,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    corsOrigins: (e.CORS_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean),
  };
}
