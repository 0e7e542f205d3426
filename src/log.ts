/**
 * The pino root logger. JSON to stdout; pretty only when asked for and a TTY
 * is attached. Secrets are redacted by path so a careless `log.info({ req })`
 * cannot leak a token, a key or a push endpoint (the endpoint URL is a
 * bearer capability for that device).
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export const REDACT_PATHS = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers["x-service-key"]',
  'headers["x-service-key"]',
  'serviceKey',
  '*.serviceKey',
  'privateKey',
  '*.privateKey',
  'endpoint',
  '*.endpoint',
  'keys',
  '*.keys',
  'p256dh',
  'auth',
  '*.p256dh',
  '*.auth',
  'secret',
  '*.secret',
  'databaseUrl',
  '*.databaseUrl',
];

export interface LogOptions {
  level: string;
  pretty: boolean;
  base?: Record<string, unknown>;
}

export function createLogger(opts: LogOptions, destination?: DestinationStream): Logger {
  const options = {
    level: opts.level,
    base: opts.base ?? {},
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (!destination && opts.pretty && process.stdout.isTTY) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return destination ? pino(options, destination) : pino(options);
}

/**
 * A failure reason fit for a log line: every quoted excerpt becomes "…".
 * Reasons quote what a model replied (which may echo the user's mission) or
 * what a device wrote; the full reason stays with the occurrence, for the user.
 */
export function withoutQuotes<T extends string | null | undefined>(reason: T): T {
  return (typeof reason === 'string' ? reason.replace(/"(?:[^"\\\n]|\\.)*"/g, '"…"') : reason) as T;
}

export type { Logger };
