/**
 * The e2e stack, started once for the whole run in Playwright's runner
 * process: an embedded Postgres in a temp dir on a free port, the local push
 * service (web-push-testing), a stub mana-llm, and one coordinator in
 * process with short timeouts. Specs reach them through E2E_* variables
 * (workers inherit the runner's environment) and over HTTP only.
 *
 * The coordinator's log goes to test-results/e2e-server.log (E2E_LOG sets
 * the level, default info).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { createSql } from '../src/db/pool.js';
import { startEmbeddedDb } from '../src/db/embedded.js';
import { startWebPushTesting } from '../test/nudge/web-push-testing-server.js';
import { startLlmStub } from './support/llm-stub.js';
import { freePort } from '../test/support/free-port.js';
import { startTestCoordinator } from '../test/support/coordinator.js';


export default async function globalSetup(): Promise<() => Promise<void>> {
  const started = Date.now();
  const logDir = resolve('test-results');
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, 'e2e-server.log');
  const log = pino({ level: process.env['E2E_LOG'] ?? 'info' }, pino.destination({ dest: logFile, sync: true, append: false }));

  const stops: (() => Promise<unknown>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => console.error('e2e teardown:', e));
  };
  try {
    const dir = mkdtempSync(join(tmpdir(), 'mana-ai-e2e-pg-'));
    stops.push(async () => rmSync(dir, { recursive: true, force: true }));
    const db = await startEmbeddedDb({ dir, port: await freePort(), database: 'mana_sync', log: log.child({ component: 'embedded-pg' }) });
    stops.push(() => db.stop());
    const sql = createSql(db.url('mana_sync'), { max: 20, appName: 'mana-ai-e2e' });
    stops.push(() => sql.end({ timeout: 5 }));

    const wpt = await startWebPushTesting();
    stops.push(() => wpt.close());
    const llm = await startLlmStub();
    stops.push(() => llm.close());

    // The one test harness's coordinator (its defaults: dev mode, any free port), with the e2e stack's services and short timeouts.
    const coordinator = await startTestCoordinator(
      sql,
      {
        MANA_LLM_URL: llm.url,
        PUSH_ENDPOINT_ALLOWLIST: wpt.origin,
        TICK_INTERVAL_MS: '200',
        WS_CLAIM_TIMEOUT_MS: '3000',
        PUSH_CLAIM_TIMEOUT_MS: '15000',
        PLANNER_RETRY_BACKOFF_MS: '1000,2000',
        RATE_LIMIT_PER_MINUTE: '10000',
        INSTANCE_ID: 'e2e',
      },
      { log },
    );
    stops.push(() => coordinator.stop());

    process.env['E2E_BASE_URL'] = coordinator.url;
    process.env['E2E_DB_URL'] = db.url('mana_sync');
    process.env['E2E_WPT_ORIGIN'] = wpt.origin;
    process.env['E2E_LLM_URL'] = llm.url;
    console.log(`e2e: coordinator ${coordinator.url}, push service ${wpt.origin}, llm ${llm.url} (${Date.now() - started} ms); log ${logFile}`);
    return stopAll;
  } catch (err: unknown) {
    await stopAll();
    throw err;
  }
}
