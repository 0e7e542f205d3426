/**
 * `npm run bench` runs every bench and fails when one cannot run: a module
 * without run(), one that throws, or a filter that matches nothing.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { selectBenches } from './bench/run.js';

const dir = mkdtempSync(join(tmpdir(), 'mana-ai-bench-runner-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runner(files: Record<string, string>, args: string[]) {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/bench/run.ts', ...args], {
    env: { ...process.env, BENCH_DIR: dir },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe('bench runner', () => {
  it('selects *-bench.ts files by the words given, in name order', () => {
    const files = ['push-bench.ts', 'gen-history.ts', 'run.ts', 'nudge-bench.ts', 'planner-bench.ts'];
    expect(selectBenches(files, [])).toEqual(['nudge-bench.ts', 'planner-bench.ts', 'push-bench.ts']);
    expect(selectBenches(files, ['push', 'nudge'])).toEqual(['nudge-bench.ts', 'push-bench.ts']);
  });

  it('runs every bench with progress, and fails the command for one that exports no run()', () => {
    const r = runner(
      {
        'a-bench.ts': "export async function run(): Promise<void> { process.stdout.write('figures of a\\n'); }\n",
        'b-bench.ts': 'export const nothing = 1;\n',
        'c-bench.ts': "export async function run(): Promise<void> { process.stdout.write('figures of c\\n'); }\n",
      },
      [],
    );
    expect(r.out).toContain('figures of a');
    expect(r.out).toContain('figures of c');
    expect(r.err).toContain('[bench 1/3] a-bench.ts');
    expect(r.err).toContain('b-bench.ts exports no run()');
    expect(r.err).toContain('2/3 ran');
    expect(r.status).toBe(1);
  }, 240_000);

  it('fails for a bench that throws, and for a filter that matches nothing', () => {
    const thrown = runner({ 'd-bench.ts': "export async function run(): Promise<void> { throw new Error('no database'); }\n" }, ['d-bench']);
    expect(thrown.err).toContain('no database');
    expect(thrown.status).toBe(1);
    const none = runner({}, ['no-such-bench']);
    expect(none.err).toContain('no bench matches no-such-bench');
    expect(none.status).toBe(1);
  }, 240_000);

  it('succeeds when every chosen bench ran', () => {
    expect(runner({}, ['a-bench', 'c-bench']).status).toBe(0);
  }, 240_000);
});
