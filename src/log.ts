/**
 * The pino root logger. On a terminal it prints readable lines (pino-pretty);
 * anywhere else (a container, a pipe, a file) one JSON object per line, which
 * is what log shippers read. pino-pretty is a development dependency and is
 * loaded only when a pretty log is wanted, so a production install without
 * it logs JSON as before. Secrets are redacted by path so a careless
 * `log.info({ req })` cannot leak a token, a key or a push endpoint (the
 * endpoint URL is a bearer capability for that device).
 */
import { createRequire } from 'node:module';
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
  /** true: readable lines, false: JSON, undefined: readable on a terminal only. */
  pretty: boolean | undefined;
  base?: Record<string, unknown>;
}

/** Where log lines go; `isTTY` decides the automatic format. */
export type LogOutput = DestinationStream & { isTTY?: boolean };

/** Whether to print readable lines: as configured, else when the output is a terminal. */
export function wantsPretty(setting: boolean | undefined, isTTY: boolean): boolean {
  return setting ?? isTTY;
}

type PrettyFactory = (opts: { destination: LogOutput; colorize: boolean; sync: boolean; translateTime: string; singleLine: boolean; ignore: string }) => DestinationStream;

/** pino-pretty when it is installed, else null (a production install has only JSON). */
export function loadPrettyFactory(load: (id: string) => unknown = createRequire(import.meta.url)): PrettyFactory | null {
  try {
    const mod = load('pino-pretty') as PrettyFactory | { default: PrettyFactory };
    return typeof mod === 'function' ? mod : mod.default;
  } catch {
    return null;
  }
}

/**
 * The logger. Without `output` it writes to stdout. Readable lines are
 * written synchronously on the main thread (no transport worker), so the
 * last lines before an exit are never lost.
 */
export function createLogger(opts: LogOptions, output?: LogOutput, loadPretty: () => PrettyFactory | null = loadPrettyFactory): Logger {
  const options = {
    level: opts.level,
    base: opts.base ?? {},
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const isTTY = Boolean(output ? output.isTTY : process.stdout.isTTY);
  if (wantsPretty(opts.pretty, isTTY)) {
    const pretty = loadPretty();
    if (pretty) {
      const destination = output ?? (process.stdout as LogOutput);
      return pino(options, pretty({ destination, colorize: isTTY, sync: true, translateTime: 'SYS:HH:MM:ss.l', singleLine: true, ignore: 'pid,hostname,service,instance' }));
    }
    const log = output ? pino(options, output) : pino(options);
    log.warn('readable logs need pino-pretty (a development dependency), which is not installed; logging JSON');
    return log;
  }
  return output ? pino(options, output) : pino(options);
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
