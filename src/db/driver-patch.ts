/**
 * postgres.js runs patched (scripts/patch-postgres.mjs: a closed connection
 * under a transaction crashed or hung the process). An unpatched driver
 * must not start quietly: the start checks the files this process actually
 * loads carry the patch.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StartError } from '../start-error.js';

export const PATCH_MARKER = 'mana-ai patch: porsager/postgres#1208';

/**
 * A text each file carries once patched by the current script: its latest
 * edit, so a driver patched by an earlier script (whose node_modules an
 * install did not rerun the script over) is refused too.
 */
const PATCHED_TEXT: Record<string, string> = {
  'connection.js': PATCH_MARKER,
  'index.js': `${PATCH_MARKER}: a reserve stays queued`,
};

/** Throws StartError unless the postgres.js this process imports is patched. */
export function assertDriverPatched(resolve: (specifier: string) => string = (s) => import.meta.resolve(s)): void {
  const dir = dirname(fileURLToPath(resolve('postgres')));
  for (const [file, patched] of Object.entries(PATCHED_TEXT)) {
    let text: string;
    try {
      text = readFileSync(join(dir, file), 'utf8');
    } catch {
      throw new StartError(`postgres.js: expected ${join(dir, file)} (is the postgres package installed?)`);
    }
    if (!text.includes(patched)) {
      throw new StartError(`postgres.js: ${join(dir, file)} is not patched; run: node scripts/patch-postgres.mjs (it fails when the installed version does not match)`);
    }
  }
}
