/**
 * What a browser downloads to use the module: a tab loads `index.js` and the
 * chunks it imports, a service worker `sw.js` and its chunks. Measured on a
 * fresh build of web-client/src with the same esbuild settings as
 * `scripts/build-web-client.mjs` (its own function), as shipped and
 * minified, raw and gzipped (level 9, as a static server precompresses).
 * Deterministic for given sources, so the budget is checked by a test.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { buildWebClient, type WebClientMetafile } from '../../scripts/build-web-client.mjs';

export interface LoadSize {
  /** Files the browser fetches for this entry, entry first. */
  files: string[];
  bytes: number;
  gzipBytes: number;
}

export interface WebClientSize {
  shipped: { tab: LoadSize; sw: LoadSize };
  minified: { tab: LoadSize; sw: LoadSize };
}

/** Gzipped bytes a tab / a service worker may load, as shipped (not minified). */
export const SIZE_BUDGET_GZIP = { tab: 14 * 1024, sw: 11 * 1024 } as const;

/** The entry's output file and every file it imports statically, transitively. */
export function loadedFiles(meta: WebClientMetafile, entry: string): string[] {
  const out = Object.keys(meta.outputs).find((o) => o.endsWith('.js') && meta.outputs[o]!.entryPoint?.endsWith(`web-client/src/${entry}`));
  if (!out) throw new Error(`expected an output for web-client/src/${entry}; the build has ${Object.keys(meta.outputs).join(', ')}`);
  const seen = [out];
  for (let i = 0; i < seen.length; i++) {
    for (const imp of meta.outputs[seen[i]!]!.imports) {
      if (imp.kind === 'import-statement' && !imp.external && !seen.includes(imp.path)) seen.push(imp.path);
    }
  }
  return seen;
}

function sizeOf(meta: WebClientMetafile, entry: string): LoadSize {
  const files = loadedFiles(meta, entry);
  let bytes = 0;
  let gzipBytes = 0;
  for (const f of files) {
    const text = readFileSync(resolve(f));
    bytes += text.length;
    gzipBytes += gzipSync(text, { level: 9 }).length;
  }
  return { files: files.map((f) => basename(f)), bytes, gzipBytes };
}

async function measure(minify: boolean): Promise<{ tab: LoadSize; sw: LoadSize }> {
  const outdir = mkdtempSync(join(tmpdir(), 'mana-ai-web-client-size-'));
  try {
    const meta = await buildWebClient({ outdir, minify });
    return { tab: sizeOf(meta, 'index.ts'), sw: sizeOf(meta, 'sw.ts') };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

export async function measureWebClient(): Promise<WebClientSize> {
  return { shipped: await measure(false), minified: await measure(true) };
}

const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

export function formatWebClientSize(r: WebClientSize): string {
  const row = (what: string, s: LoadSize, m: LoadSize, budget: number) =>
    `| ${what} | ${s.files.length} | ${kib(s.bytes)} | ${kib(s.gzipBytes)} | ${kib(m.bytes)} | ${kib(m.gzipBytes)} | ${kib(budget)} | ${s.gzipBytes <= budget ? 'met' : '**over**'} |`;
  return [
    '| loads | files | as shipped | gzipped | minified | minified, gzipped | budget (gzipped, as shipped) | |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
    row('a tab (`mana-ai/web-client`)', r.shipped.tab, r.minified.tab, SIZE_BUDGET_GZIP.tab),
    row('a service worker (`mana-ai/web-client/sw`)', r.shipped.sw, r.minified.sw, SIZE_BUDGET_GZIP.sw),
  ].join('\n');
}
