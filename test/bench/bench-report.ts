/** Writing a bench's figures into BENCHMARKS.md, one `## ` section per bench, leaving the rest as it is. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCHMARKS_FILE = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'BENCHMARKS.md');

/**
 * Replaces the section headed `heading` ("## …") with `section` (which
 * starts with that heading), or adds it: first after the intro when `first`,
 * else at the end.
 */
export function replaceSection(heading: string, section: string, opts: { first?: boolean } = {}): void {
  const text = existsSync(BENCHMARKS_FILE) ? readFileSync(BENCHMARKS_FILE, 'utf8') : '# Benchmarks\n\nMeasured on this repository\'s code; each section says how to reproduce it.\n';
  const start = text.indexOf(`\n${heading}\n`);
  let next: string;
  if (start >= 0) {
    const after = text.indexOf('\n## ', start + heading.length + 1);
    next = `${text.slice(0, start + 1)}${section}${after >= 0 ? text.slice(after) : ''}`;
  } else {
    const firstSection = text.indexOf('\n## ');
    next = opts.first && firstSection >= 0 ? `${text.slice(0, firstSection + 1)}${section}\n${text.slice(firstSection + 1)}` : `${text.trimEnd()}\n\n${section}`;
  }
  writeFileSync(BENCHMARKS_FILE, next);
}

/** Prints a bench's section and, unless BENCH_NO_WRITE=1, puts it into BENCHMARKS.md. */
export function reportSection(heading: string, body: string): void {
  process.stdout.write(`${heading}\n\n${body}\n`);
  if (process.env['BENCH_NO_WRITE'] !== '1') replaceSection(heading, `${heading}\n\n${body}\n`);
}
