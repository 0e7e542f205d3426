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

export type { Logger };
