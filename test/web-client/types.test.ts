/**
 * The browser module ships types: a strict TypeScript webapp that imports
 * `mana-ai/web-client` (a tab) and `mana-ai/web-client/sw` (its service
 * worker) through package.json `exports` type-checks, and gets real types,
 * not `any` (the fixture's `@ts-expect-error` lines fail the compile if a
 * type is missing). The declarations are built here from web-client/src, as
 * scripts/build-web-client.mjs builds them.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const app = mkdtempSync(join(tmpdir(), 'mana-ai-typed-app-'));

beforeAll(() => {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'web-client', 'tsconfig.json')], { stdio: 'pipe' });
  cpSync(join(root, 'test', 'fixtures', 'typed-app', 'src'), join(app, 'src'), { recursive: true });
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'typed-app', private: true, type: 'module' }));
  mkdirSync(join(app, 'node_modules'));
  // The installed package, as `npm install mana-ai` would place it.
  symlinkSync(root, join(app, 'node_modules', 'mana-ai'), 'dir');
}, 240_000);
afterAll(() => rmSync(app, { recursive: true, force: true }));

/** Diagnostics of a strict program over one fixture file, as text. */
function compile(file: string, lib: string[], checkDeclarations = true): string[] {
  const program = ts.createProgram([join(app, 'src', file)], {
    strict: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    noEmit: true,
    skipLibCheck: !checkDeclarations,
    // Our declarations (and what they import) are checked; TypeScript's own lib files need not be.
    skipDefaultLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib,
    types: [],
  });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${d.file.fileName.replace(app, '<app>').replace(root, '<mana-ai>')}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : '';
    return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
}

describe('typed browser package', () => {
  it('type-checks a tab that imports mana-ai/web-client', () => {
    expect(compile('app.ts', ['lib.es2022.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'])).toEqual([]);
  }, 240_000);

  it('type-checks a service worker that imports mana-ai/web-client/sw', () => {
    expect(compile('sw.ts', ['lib.es2022.d.ts', 'lib.webworker.d.ts'])).toEqual([]);
  }, 240_000);

  it('reports a misuse, so a passing compile means something', () => {
    writeFileSync(join(app, 'src', 'wrong.ts'), "import { createMissionClient } from 'mana-ai/web-client';\ncreateMissionClient({ baseUrl: 'x' });\n");
    const errors = compile('wrong.ts', ['lib.es2022.d.ts', 'lib.dom.d.ts'], false);
    expect(errors.join('\n')).toContain('getToken');
  }, 240_000);
});
