/**
 * Classifying database errors by code, never by message text: a lost or
 * refused connection (the database is down or restarting) is one class,
 * reported once by the scheduler's outage log; everything else is a real
 * error of the statement or the data.
 */

/** SQLSTATEs that mean the server went away or is not accepting connections yet. */
export const CONNECTION_SQLSTATES: ReadonlySet<string> = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down, in recovery)
]);

/** Codes of postgres.js's own connection errors and of the socket underneath. */
export const CONNECTION_CLIENT_CODES: ReadonlySet<string> = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** True when `err` says the database connection was lost or refused (SQLSTATE class 08 included). */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return code.startsWith('08') || CONNECTION_SQLSTATES.has(code) || CONNECTION_CLIENT_CODES.has(code);
}
