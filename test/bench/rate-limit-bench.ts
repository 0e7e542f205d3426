/**
 * The rate limiter's cost per request as the number of users grows. A
 * limiter that scanned its buckets would grow with the users; an O(1) one
 * costs what one Map lookup costs. So each size is measured twice on the same
 * keys: the limiter's take(), and a bare Map lookup-and-update of the same
 * number of entries (the floor any per-user table pays: a bigger map misses
 * the CPU caches more). The ratio between them is what the limiter adds; it
 * stays flat when the limiter is O(1). Figures are CPU time (user + system),
 * not wall time, so other processes on the machine count less.
 *
 * Each size first fills the limiter with that many users (one take each),
 * then times a stream of takes spread over 4,096 of them, with a clock
 * advancing 1 ms per 100 takes so generations rotate as in production.
 *
 *   npm run bench -- rate-limit
 *   RATE_LIMIT_BENCH_SIZES=1000,1000000 node --import tsx test/bench/rate-limit-bench.ts
 */
import { Registry } from 'prom-client';
import { createRateLimiter } from '../../src/http/rate-limit.js';

const SIZES = (process.env['RATE_LIMIT_BENCH_SIZES'] ?? '1000,100000,1000000').split(',').map(Number);
const TAKES = 1_000_000;

function cpuNsPer(ops: number, fn: () => void): number {
  const before = process.cpuUsage();
  fn();
  const used = process.cpuUsage(before);
  return ((used.user + used.system) * 1000) / ops;
}

function keysFor(users: number): string[] {
  return Array.from({ length: 4096 }, (_, i) => `user-${(i * 7919) % users}`);
}

function limiterNs(users: number): { ns: number; buckets: number } {
  let t = 0;
  const limiter = createRateLimiter({ perMinute: 60, registry: new Registry(), now: () => t });
  for (let i = 0; i < users; i++) limiter.take('claims', `user-${i}`);
  const keys = keysFor(users);
  const ns = cpuNsPer(TAKES, () => {
    for (let i = 0; i < TAKES; i++) {
      if (i % 100 === 0) t += 1;
      limiter.take('claims', keys[i & 4095]!);
    }
  });
  return { ns, buckets: limiter.size() };
}

function mapNs(users: number): number {
  const map = new Map<string, { tokens: number; updatedAt: number }>();
  for (let i = 0; i < users; i++) map.set(`claims\u0000user-${i}`, { tokens: 30, updatedAt: 0 });
  const keys = keysFor(users);
  return cpuNsPer(TAKES, () => {
    for (let i = 0; i < TAKES; i++) {
      const b = map.get(`claims\u0000${keys[i & 4095]!}`)!;
      b.tokens = Math.min(30, b.tokens + 0.001);
      b.updatedAt = i;
    }
  });
}

export async function run(): Promise<void> {
  process.stdout.write('| users filled | limiter ns/take (CPU) | bare Map ns/lookup (CPU) | ratio | buckets after |\n| ---: | ---: | ---: | ---: | ---: |\n');
  for (const users of SIZES) {
    const limiter = limiterNs(users);
    const floor = mapNs(users);
    process.stdout.write(
      `| ${users.toLocaleString('en-US')} | ${limiter.ns.toFixed(0)} | ${floor.toFixed(0)} | ${(limiter.ns / floor).toFixed(1)} | ${limiter.buckets.toLocaleString('en-US')} |\n`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
