/**
 * The one reader of `process.env`. Every setting is parsed and validated
 * here, once, into a typed Config; a bad value stops startup with one line
 * per problem naming the variable and what was expected.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { configProblems, DEFAULT_SERVICE_KEY, modeOf } from './config-rules.js';
import { DEFAULT_PUSH_ALLOWLIST } from './devices/endpoint-guard.js';
import { parseTrustProxy, type TrustProxy } from './http/client-address.js';
import { isValidTimeZone } from './lib/time-zone.js';

export { DEFAULT_SERVICE_KEY };
export { DEFAULT_PUSH_ALLOWLIST };

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

/** A plain Postgres identifier: it is spliced into SQL (quoted), so nothing that needs escaping. */
const identifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, { message: 'expected a lower-case Postgres identifier such as public' });

/** Never quoted back in an error line: a bad value may still be (part of) a real secret. */
const SECRET_VARIABLES = new Set(['MANA_SERVICE_KEY', 'MANA_LLM_API_KEY', 'METRICS_TOKEN', 'VAPID_PRIVATE_KEY', 'SYNC_DATABASE_URL', 'DATABASE_URL']);

// The zones devices report are checked by the same rule.
const timeZone = z.string().refine(isValidTimeZone, { message: 'expected an IANA time zone such as UTC or Europe/Berlin' });

const EnvSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test'], { message: 'expected development, production or test' }).default('development'),
  PORT: int(0, 65535).default(3066),
  HOST: z.string().default('0.0.0.0'),
  SYNC_DATABASE_URL: optionalPgUrl,
  DATABASE_URL: optionalPgUrl,
  DEV_MODE: bool.default(false),
  SYNC_SCHEMA: identifier.default('public'),
  SYNC_WRITER_ROLE: identifier.default('mana_ai_writer'),
  DB_POOL_MAX: int(2, 100).default(10),
  EMBEDDED_PG_DIR: z.string().default('.data/pg'),
  EMBEDDED_PG_PORT: int(1, 65535).default(54329),
  MANA_LLM_URL: optionalHttpUrl,
  MANA_LLM_MODEL: z.string().default('mana-default'),
  MANA_SERVICE_KEY: z.string().min(8, { message: 'expected at least 8 characters' }).default(DEFAULT_SERVICE_KEY),
  MANA_LLM_API_KEY: optional(z.string().min(8, { message: 'expected at least 8 characters' })),
  METRICS_TOKEN: optional(z.string().min(16, { message: 'expected at least 16 characters' })),
  METRICS_PORT: optional(int(1, 65535)),
  TICK_INTERVAL_MS: int(50, 3_600_000).default(1000),
  TICK_ENABLED: bool.default(true),
  PROJECTION_BATCH_ROWS: int(100, 100_000).default(5000),
  PROJECTION_CACHE_RECORDS: int(100, 10_000_000).default(50_000),
  SYNC_CREATE_INDEX: bool.default(false),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { message: 'expected a pino level' }).default('info'),
  LOG_PRETTY: bool.optional(),
  INSTANCE_ID: optionalString,
  WS_CLAIM_TIMEOUT_MS: int(100, 3_600_000).default(20_000),
  PUSH_CLAIM_TIMEOUT_MS: int(100, 3_600_000).default(120_000),
  PUSH_BATCH_WINDOW_MS: int(0, 60_000).default(3_000),
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
  TRUST_PROXY: z
    .string()
    .optional()
    .superRefine((v, ctx) => {
      const t = parseTrustProxy(v);
      if (typeof t === 'string') ctx.addIssue({ code: 'custom', message: t });
    }),
  CORS_ORIGINS: optionalString,
  // Abuse bounds: what one user (or one upstream) can make this service hold or spend.
  WS_MAX_SOCKETS_PER_USER: int(1, 10_000).default(16),
  WS_MAX_SOCKETS: int(1, 1_000_000).default(10_000),
  PUSH_MAX_SUBSCRIPTIONS_PER_USER: int(1, 1000).default(10),
  PLANNER_MAX_PLANS_PER_USER_PER_DAY: int(0, 100_000).default(50),
  MANA_LLM_MAX_RESPONSE_BYTES: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
});

export interface Config {
  env: 'development' | 'production' | 'test';
  /**
   * 'dev' only with the embedded database or DEV_MODE=1: dev tokens and
   * routes, the default service key, creating sync_changes. Everything else
   * is 'production', whatever NODE_ENV says (config-rules.ts).
   */
  mode: 'dev' | 'production';
  version: string;
  port: number;
  host: string;
  /** Undefined → the embedded Postgres (dev default only). */
  databaseUrl: string | undefined;
  dbPoolMax: number;
  embedded: { dir: string; port: number };
  /** True when the dev conveniences are on: dev tokens, the demo, the dev sync endpoint. */
  devDefaults: boolean;
  /** Create sync_changes when missing (dev mode only: mana-sync owns it). */
  devSyncTable: boolean;
  /** Schema of mana-sync's sync_changes; every reference to the table is qualified with it. */
  syncSchema: string;
  /** Role for per-user writes to sync_changes, so RLS applies even to a BYPASSRLS login. */
  syncWriterRole: string;
  llm: {
    url: string | undefined;
    /** Bearer credential for mana-llm: MANA_LLM_API_KEY, else the service key. */
    apiKey: string;
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
  /** /metrics: a Bearer token it requires, and/or a port of its own (then not on the main port). */
  metrics: { token: string | undefined; port: number | undefined };
  tick: { intervalMs: number; enabled: boolean };
  projection: { batchRows: number; cacheRecords: number };
  /** Build the projection's fast-path index on sync_changes at start when it is missing (src/db/sync-index.sql). */
  syncCreateIndex: boolean;
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
  /** A user's missions due within this long of the first go out in one push (0: per pass). */
  pushBatchWindowMs: number;
  defaultTimeZone: string;
  rateLimitPerMinute: number;
  /** Which X-Forwarded-For hops to believe when counting wrong service keys per client (http/client-address.ts). */
  trustProxy: TrustProxy;
  /** Origins allowed to call /v1/* and /dev/* from a browser; empty → same-origin only. */
  corsOrigins: string[];
  /** What one user (or one upstream reply) can make this service hold or spend. */
  limits: {
    /** Authenticated sockets of one user on this instance; the newest past it is refused (4429). */
    wsSocketsPerUser: number;
    /** Open sockets on this instance, authenticated or not; the newest past it is refused. */
    wsSockets: number;
    /** Push subscriptions of one user, across instances; past it PUT answers 409. */
    pushSubscriptionsPerUser: number;
    /** Server plans one user may cause in a rolling 24 h; past it occurrences wait for a device. */
    plansPerUserPerDay: number;
    /** Largest mana-llm reply read; a larger one is a failed attempt. */
    llmResponseBytes: number;
  };
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
        const got = SECRET_VARIABLES.has(name) ? undefined : env[name];
        return `${name}: ${i.message}${got === undefined ? '' : ` (got "${got.length > 40 ? `${got.slice(0, 40)}…` : got}")`}`;
      }),
    );
  }
  const e = parsed.data;
  const databaseUrl = e.SYNC_DATABASE_URL ?? e.DATABASE_URL;
  const problems = configProblems({ ...e, databaseUrl });
  if (problems.length > 0) throw new ConfigError(problems);
  const mode = modeOf({ ...e, databaseUrl });

  return {
    env: e.NODE_ENV,
    mode,
    version,
    port: e.PORT,
    host: e.HOST,
    databaseUrl,
    dbPoolMax: e.DB_POOL_MAX,
    embedded: { dir: e.EMBEDDED_PG_DIR, port: e.EMBEDDED_PG_PORT },
    devDefaults: mode === 'dev' && !e.JWKS_URL,
    devSyncTable: mode === 'dev',
    syncSchema: e.SYNC_SCHEMA,
    syncWriterRole: e.SYNC_WRITER_ROLE,
    llm: {
      url: e.MANA_LLM_URL,
      apiKey: e.MANA_LLM_API_KEY ?? e.MANA_SERVICE_KEY,
      model: e.MANA_LLM_MODEL,
      timeoutMs: e.PLANNER_TIMEOUT_MS,
      concurrency: e.PLANNER_CONCURRENCY,
      maxAttempts: e.PLANNER_MAX_ATTEMPTS,
      retryBackoffMs: e.PLANNER_RETRY_BACKOFF_MS,
      maxRetries: e.PLANNER_MAX_RETRIES,
    },
    serviceKey: e.MANA_SERVICE_KEY,
    metrics: { token: e.METRICS_TOKEN, port: e.METRICS_PORT },
    tick: { intervalMs: e.TICK_INTERVAL_MS, enabled: e.TICK_ENABLED },
    projection: { batchRows: e.PROJECTION_BATCH_ROWS, cacheRecords: e.PROJECTION_CACHE_RECORDS },
    syncCreateIndex: e.SYNC_CREATE_INDEX,
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
    pushBatchWindowMs: e.PUSH_BATCH_WINDOW_MS,
    defaultTimeZone: e.DEFAULT_TIMEZONE,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    trustProxy: parseTrustProxy(e.TRUST_PROXY) as TrustProxy,
    corsOrigins: (e.CORS_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean),
    limits: {
      wsSocketsPerUser: e.WS_MAX_SOCKETS_PER_USER,
      wsSockets: e.WS_MAX_SOCKETS,
      pushSubscriptionsPerUser: e.PUSH_MAX_SUBSCRIPTIONS_PER_USER,
      plansPerUserPerDay: e.PLANNER_MAX_PLANS_PER_USER_PER_DAY,
      llmResponseBytes: e.MANA_LLM_MAX_RESPONSE_BYTES,
    },
  };
}
