/**
 * `npm run bench`: every benchmark in this folder, one after the other (they
 * share the machine, so never at once). `npm run bench -- projection push`
 * runs only those whose file name contains one of the words.
 *
 * Known modules run first, in this order, through the entry they export;
 * any other `*-bench.ts` here that exports `run(): Promise<void>` runs after
 * them. A listed module that is not there is skipped.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

type Entry = { file: string; run: (mod: Record<string, unknown>) => Promise<void> };

const KNOWN: Entry[] = [
  { file: 'projection-bench.ts', run: (mod) => (mod['run'] as () => Promise<void>)() },
  {
    file: 'push-bench.ts',
    run: async (mod) => {
      const result = await (mod['runPushBench'] as (opts?: { progress?: (line: string) => void }) => Promise<unknown>)({
        progress: (line) => process.stderr.write(`[push-bench] ${line}\n`),
      });
      const format = mod['formatPushBench'] as ((r: unknown) => string) | undefined;
      process.stdout.write(`${format ? format(result) : JSON.stringify(result, null, 2)}\n`);
    },
  },
];

async function main(): Promise<void> {
  const filters = process.argv.slice(2);
  const wanted = (file: string) => filters.length === 0 || filters.some((f) => file.includes(f));
  const entries: Entry[] = KNOWN.filter((e) => existsSync(join(here, e.file)));
  for (const file of readdirSync(here).sort()) {
    if (!file.endsWith('-bench.ts') || KNOWN.some((e) => e.file === file)) continue;
    entries.push({
      file,
      run: async (mod) => {
        if (typeof mod['run'] === 'function') await (mod['run'] as () => Promise<void>)();
        else process.stderr.write(`[bench] ${file} exports no run(); skipped\n`);
      },
    });
  }
  for (const entry of entries.filter((e) => wanted(e.file))) {
    process.stderr.write(`[bench] ${entry.file}\n`);
    const mod = (await import(pathToFileURL(join(here, entry.file)).href)) as Record<string, unknown>;
    await entry.run(mod);
  }
}

await main();
