/**
 * One error type for HTTP: a status, a stable code, a message that says what
 * was expected and what came. app.onError maps it to `{ error: { code, message } }`;
 * anything else is a 500 that says little and logs the cause.
 */
import type { ContentfulStatusCode } from 'hono/utils/http-status';

export class AppError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, options);
    this.name = 'AppError';
    this.headers = options?.headers;
  }
  readonly headers: Record<string, string> | undefined;
}

export const errorBody = (code: string, message: string) => ({ error: { code, message } });

/**
 * SQLSTATEs that a request's own values cause, so the answer is a 400, not a
 * 500: text Postgres cannot store (NUL), or a value too long for an index.
 */
export const CLIENT_VALUE_SQLSTATES: Readonly<Record<string, string>> = {
  '22021': 'a character the database cannot store (NUL)',
  '22P05': 'a character the database cannot store (\\u0000 in JSON)',
  '22001': 'a value too long to store',
  '54000': 'a value too long to index',
};

/** The 400 message for a Postgres error caused by the request's values, or undefined. */
export function clientValueProblem(err: unknown): string | undefined {
  if (!(err instanceof Error) || err.name !== 'PostgresError') return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? CLIENT_VALUE_SQLSTATES[code] : undefined;
}
