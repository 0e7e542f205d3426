/**
 * Runs `node --import tsx src/main.ts` with exactly the given environment
 * (plus PATH and HOME) until it exits, for starts that must be refused.
 */
import { spawn } from 'node:child_process';
import { REPO_ROOT } from '../reliability/support/child.js';

export interface ExitedRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Non-empty stderr lines. */
  stderrLines: string[];
}

export async function runToExit(env: Record<string, string>, timeoutMs = 30_000): Promise<ExitedRun> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => proc.on('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr, stderrLines: stderr.split('\n').filter((l) => l.trim() !== '') };
}
