/**
 * `npm run bench`: every `*-bench.ts` in this folder, one after the other
 * (they share the machine, so never at once). `npm run bench -- projection
 * push` runs only those whose file name contains one of the words.
 *
 * Every bench module exports `run(): Promise<void>`, which prints its figures
 * on stdout and its progress on stderr. A module without it, or one that
 * throws, fails the command (after the others ran), and so does a filter
 * that matches nothing: a benchmark is never skipped in silence.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** BENCH_DIR points the runner at another folder (its own test does). */
const here = process.env['BENCH_DIR'] ?? dirname(fileURLToPath(import.meta.url));

/** The bench files a command line selects, in name order. */
export function selectBenches(files: readonly string[], filters: readonly string[]): string[] {
  return files
    .filter((f) => f.endsWith('-bench.ts'))
    .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)))
    .sort();
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function runOne(file: string): Promise<void> {
  const mod = (await import(pathToFileURL(join(here, file)).href)) as { run?: unknown };
  if (typeof mod.run !== 'function') {
    throw new Error(`${file} exports no run(): every bench in test/bench must export run(): Promise<void>`);
  }
  await (mod.run as () => Promise<void>)();
}

async function main(): Promise<number> {
  const filters = process.argv.slice(2);
  const all = readdirSync(here);
  const chosen = selectBenches(all, filters);
  if (chosen.length === 0) {
    process.stderr.write(`[bench] no bench matches ${filters.join(', ')}; there are: ${selectBenches(all, []).join(', ')}\n`);
    return 1;
  }
  const failed: string[] = [];
  const started = Date.now();
  for (const [i, file] of chosen.entries()) {
    const t0 = Date.now();
    process.stderr.write(`[bench ${i + 1}/${chosen.length}] ${file} …\n`);
    try {
      await runOne(file);
      process.stderr.write(`[bench ${i + 1}/${chosen.length}] ${file} done in ${seconds(Date.now() - t0)}\n`);
    } catch (err: unknown) {
      failed.push(file);
      process.stderr.write(`[bench ${i + 1}/${chosen.length}] ${file} FAILED after ${seconds(Date.now() - t0)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    }
  }
  const ok = chosen.length - failed.length;
  process.stderr.write(`[bench] ${ok}/${chosen.length} ran in ${seconds(Date.now() - started)}${failed.length ? `; failed: ${failed.join(', ')}` : ''}\n`);
  return failed.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // Exit explicitly: a bench may leave a pool or a child's pipe that keeps the loop alive.
  process.exit(await main());
}
