/**
 * The postgres.js patch fails loudly: the install script exits 1 on another
 * version or a source it does not match, and the start refuses a driver
 * without the patch. The installed driver is patched (control).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { assertDriverPatched } from '../../src/db/driver-patch.js';
import { StartError } from '../../src/start-error.js';

const SCRIPT = new URL('../../scripts/patch-postgres.mjs', import.meta.url);
const dirs: string[] = [];

function fakePackage(version: string, source: string): string {
  const root = mkdtempSync(join(tmpdir(), 'mana-ai-pgpatch-'));
  dirs.push(root);
  mkdirSync(join(root, 'src'));
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'postgres', version }));
  writeFileSync(join(root, 'src', 'connection.js'), source);
  writeFileSync(join(root, 'src', 'index.js'), source);
  return root;
}

function runPatch(root: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT.pathname, root], (err, _stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }));
  });
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('scripts/patch-postgres.mjs', () => {
  it('exits 1 naming the versions when postgres is not the pinned version', async () => {
    const r = await runPatch(fakePackage('3.5.0', 'anything'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/expected postgres 3\.4\.9, found 3\.5\.0/);
  });

  it('exits 1 when the source does not match the edits', async () => {
    const r = await runPatch(fakePackage('3.4.9', 'function somethingElse() {}'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/src\/connection\.js of postgres 3\.4\.9 does not match the expected source; not patched/);
  });

  it('the pin in package.json is exact', async () => {
    const pkg = (await import('../../package.json', { with: { type: 'json' } })).default as { dependencies: Record<string, string> };
    expect(pkg.dependencies['postgres']).toBe('3.4.9');
  });
});

describe('assertDriverPatched', () => {
  it('passes for the installed driver', () => {
    expect(() => assertDriverPatched()).not.toThrow();
  });

  it('refuses an unpatched driver with one line saying what to run', () => {
    const root = fakePackage('3.4.9', 'export default function postgres() {}');
    const resolve = () => pathToFileURL(join(root, 'src', 'index.js')).href;
    expect(() => assertDriverPatched(resolve)).toThrow(StartError);
    expect(() => assertDriverPatched(resolve)).toThrow(/is not patched; run: node scripts\/patch-postgres\.mjs/);
  });

  it('refuses a driver patched by an earlier script, without the reserve edits', () => {
    const root = fakePackage('3.4.9', '// mana-ai patch: porsager/postgres#1208: the connection closed under this transaction');
    const resolve = () => pathToFileURL(join(root, 'src', 'index.js')).href;
    expect(() => assertDriverPatched(resolve)).toThrow(/index\.js is not patched/);
  });
});
