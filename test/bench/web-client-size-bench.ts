/**
 * `npm run bench -- web-client-size`: the bytes a tab and a service worker
 * load from the browser module (see web-client-size.ts), as a table for
 * BENCHMARKS.md.
 */
import { pathToFileURL } from 'node:url';
import { formatWebClientSize, measureWebClient } from './web-client-size.js';

export async function run(): Promise<void> {
  process.stdout.write(`${formatWebClientSize(await measureWebClient())}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await run();
