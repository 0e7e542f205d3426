/**
 * The coordinator side of the burst bench, in its own process (its memory
 * is its own): started over IPC, it runs a coordinator whose server planner
 * only records what it was handed, and answers 'mem' (RSS after a forced
 * GC), 'peak-start' / 'peak-stop' (highest RSS sampled every 50 ms between
 * them), 'planned' (iteration ids handed to the planner) and 'stop'.
 */
import { loadConfig } from '../../src/config.js';
import { startCoordinator } from '../../src/coordinator.js';
import { createSql } from '../../src/db/pool.js';
import { createLogger } from '../../src/log.js';
import { memory } from './nudge-bench.js';

interface Message {
  id: number;
  cmd: string;
  databaseUrl?: string;
  instanceId?: string;
}

export async function runBurstChild(): Promise<void> {
  const reply = (id: number, value: unknown) => process.send!({ id, ok: true, value });
  const fail = (id: number, err: unknown) => process.send!({ id, ok: false, error: (err as Error).message });
  const planned: string[] = [];
  let stop: () => Promise<void> = async () => undefined;
  let peak = 0;
  let sampler: NodeJS.Timeout | undefined;
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));

  async function start(m: Message): Promise<{ port: number }> {
    const sql = createSql(m.databaseUrl!, { max: 10, appName: 'burst-bench' });
    const config = loadConfig({
      NODE_ENV: 'test',
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      INSTANCE_ID: m.instanceId ?? 'burst',
      // No claim deadline passes during the run: only the burst is measured.
      WS_CLAIM_TIMEOUT_MS: '3600000',
    });
    const log = createLogger({ level: 'warn', pretty: false, base: { bench: m.instanceId } });
    const c = await startCoordinator({
      config,
      sql,
      log,
      fallback: {
        enabled: true,
        plan(occ) {
          planned.push(occ.iterationId);
        },
      },
    });
    stop = async () => {
      clearInterval(sampler);
      await c.stop();
      await sql.end({ timeout: 5 });
    };
    return { port: c.port };
  }

  process.on('message', (m: Message) => {
    void (async () => {
      try {
        switch (m.cmd) {
          case 'start':
            return reply(m.id, await start(m));
          case 'mem':
            return reply(m.id, memory());
          case 'peak-start':
            peak = process.memoryUsage.rss();
            sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
            return reply(m.id, null);
          case 'peak-stop':
            clearInterval(sampler);
            return reply(m.id, Math.max(peak, process.memoryUsage.rss()));
          case 'planned':
            return reply(m.id, planned);
          case 'stop':
            await stop();
            reply(m.id, null);
            process.exit(0);
        }
      } catch (err: unknown) {
        fail(m.id, err);
      }
    })();
  });
}
