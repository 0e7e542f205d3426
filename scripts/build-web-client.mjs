// Builds the browser module (web-client/src → web-client/dist) as plain ES
// modules. Runs on `npm install` (postinstall) and before the tests, so the
// coordinator can serve /web-client/* and the webapp can import it.
import { build } from 'esbuild';
import { existsSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'web-client', 'src');
if (!existsSync(srcDir)) process.exit(0);

// Every top-level .ts file is an entry: index (the tab API), sw (the
// service-worker helper), protocol (frame types), demo (the demo page).
const entryPoints = readdirSync(srcDir)
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  .map((f) => join(srcDir, f));

await build({
  entryPoints,
  outdir: join(root, 'web-client', 'dist'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16'],
  sourcemap: true,
  logLevel: 'warning',
});
