/**
 * The readiness probe behind /ready: the database answers within a bound,
 * the migrations shipped with this build ran, and which grants are missing
 * (the coordinator runs, degraded, without them).
 */
import { migrationsComplete } from './migrate.js';
import type { Sql } from './pool.js';
import type { GrantFinding } from './grants.js';

/** /ready answers 503 when the database has not answered within this long. */
export const READY_TIMEOUT_MS = 2000;

export interface Readiness {
  ready: boolean;
  /** Why not ready; an internal text, shown only to a caller with the service key. */
  reason?: string;
  /** Grants whose absence degrades the service, by name and fixing statement. */
  degraded: { name: string; fix: string }[];
}

export function createReadinessProbe(sql: Sql, degraded: GrantFinding[]): () => Promise<Readiness> {
  const missing = degraded.map((f) => ({ name: f.name, fix: f.fix }));
  let migrated = false;
  return async function isReady() {
    // A probe answers promptly: during an outage the query can wait on a connection in backoff.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    });
    try {
      await Promise.race([sql`SELECT 1`.execute(), late]);
      migrated ||= await Promise.race([migrationsComplete(sql), late]);
      return migrated ? { ready: true, degraded: missing } : { ready: false, reason: 'migrations pending', degraded: missing };
    } catch (err: unknown) {
      return { ready: false, reason: `database unreachable: ${(err as Error).message}`, degraded: missing };
    } finally {
      clearTimeout(timer);
    }
  };
}
