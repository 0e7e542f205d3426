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
