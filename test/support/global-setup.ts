/**
 * One real Postgres for the whole run: the embedded default in a temporary
 * folder, or TEST_DATABASE_URL (a superuser URL; each test file creates its
 * own database on it). Test files get the URL through vitest's inject().
 */
import type { TestProject } from 'vitest/node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { pino } from 'pino';
import { startEmbeddedDb, type EmbeddedDb } from '../../src/db/embedded.js';
import { freePort } from './free-port.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgEmbedded: { dir: string; port: number } | null;
  }
}


let embedded: EmbeddedDb | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  const external = process.env['TEST_DATABASE_URL'];
  if (external) {
    const sql = postgres(external, { max: 1, connect_timeout: 5, onnotice: () => {} });
    try {
      await sql`SELECT 1`;
    } catch (err) {
      throw new Error(`TEST_DATABASE_URL does not answer (${(err as Error).message}); unset it to use the embedded Postgres`);
    } finally {
      await sql.end();
    }
    project.provide('pgAdminUrl', external);
    project.provide('pgEmbedded', null);
    return;
  }
  dir = mkdtempSync(join(tmpdir(), 'mana-ai-test-pg-'));
  const port = await freePort();
  embedded = await startEmbeddedDb({ dir, port, log: pino({ level: 'silent' }) });
  project.provide('pgAdminUrl', embedded.url('postgres'));
  project.provide('pgEmbedded', { dir, port });
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
