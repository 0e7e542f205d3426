// Builds the browser module (web-client/src → web-client/dist) as plain ES
// modules, and its type declarations (web-client/dist/types, named by the
// `types` conditions of package.json `exports`). Runs on `npm install`
// (postinstall) and before the tests, so the coordinator can serve
// /web-client/* and a webapp can import it with types. The size benchmark
// imports buildWebClient to measure exactly this build.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'web-client', 'src');
const distDir = join(root, 'web-client', 'dist');

/** Bundles every top-level .ts file of web-client/src into `outdir`; returns esbuild's metafile. */
export async function buildWebClient({ outdir = distDir, minify = false } = {}) {
  // Every top-level .ts file is an entry: index (the tab API), sw (the
  // service-worker helper), protocol (frame types), demo and demo-sw (the
  // demo page and its worker). Shared code lives in lib/: a module left at
  // the top level would be an entry too, and its own chunk for every page.
  const entryPoints = readdirSync(srcDir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => join(srcDir, f));
  const result = await build({
    entryPoints,
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    sourcemap: true,
    minify,
    metafile: true,
    logLevel: 'warning',
  });
  return result.metafile;
}

/** Emits the .d.ts files into web-client/dist/types; false when TypeScript is not installed. */
export function buildDeclarations() {
  // esbuild strips types, so declarations come from the TypeScript compiler, a
  // development dependency: an install without it gets the JavaScript only.
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    process.stderr.write('build-web-client: typescript is not installed; web-client/dist ships no .d.ts files\n');
    return false;
  }
  rmSync(join(distDir, 'types'), { recursive: true, force: true });
  execFileSync(process.execPath, [tsc, '-p', join(root, 'web-client', 'tsconfig.json')], { stdio: 'inherit' });
  return true;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && existsSync(srcDir)) {
  await buildWebClient();
  buildDeclarations();
}
