/**
 * The coordinator side of the burst bench, in its own process (its memory
 * is its own): started over IPC, it runs a coordinator whose server planner
 * only records what it was handed, and answers 'mem' (RSS after a forced
 * GC), 'peak-start' / 'peak-stop' (highest RSS sampled every 50 ms between
 * them), 'planned' (iteration ids handed to the planner) and 'stop'.
 */
import { memory, serveChild, startBenchCoordinator } from './bench-support.js';

interface Message {
  id: number;
  cmd: string;
  databaseUrl?: string;
  instanceId?: string;
}

export function runBurstChild(): void {
  const planned: string[] = [];
  let stopChild: () => Promise<void> = async () => undefined;
  let peak = 0;
  let sampler: NodeJS.Timeout | undefined;

  async function start(m: Message): Promise<{ port: number }> {
    const c = await startBenchCoordinator(m.databaseUrl!, {
      instanceId: m.instanceId ?? 'burst',
      fallback: {
        enabled: true,
        plan(occ) {
          planned.push(occ.iterationId);
        },
      },
    });
    stopChild = async () => {
      clearInterval(sampler);
      await c.stop();
    };
    return { port: c.port };
  }

  serveChild<Message>(
    {
      start,
      mem: () => memory(),
      'peak-start': () => {
        peak = process.memoryUsage.rss();
        sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
      },
      'peak-stop': () => {
        clearInterval(sampler);
        return Math.max(peak, process.memoryUsage.rss());
      },
      planned: () => planned,
    },
    () => stopChild(),
  );
}
