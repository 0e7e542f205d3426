/**
 * A coordinator as a real child process — `node --import tsx src/main.ts`
 * with an explicit environment — so a test can `kill -9` it the way an
 * orchestrator or the OOM killer would. Its JSON log lines are parsed and
 * kept; the listening port is read from the 'coordinator listening' line
 * (PORT=0, so restarts never fight over a port).
 *
 * Every child started here is tracked; `killAllChildren()` ends them by pid
 * (and an exit hook does, should the test process die first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { TEST_ENV } from './test-env.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface LogLine {
  level: number;
  msg: string;
  time?: string;
  [k: string]: unknown;
}

export interface ChildCoordinator {
  name: string;
  pid: number;
  url: string;
  wsUrl: string;
  port: number;
  /** Every JSON log line so far (stdout). */
  logs: LogLine[];
  /** Non-JSON output (stderr, stray stdout). */
  other: string[];
  /** ms since the epoch when the child printed 'coordinator listening'. */
  readyAt: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** SIGKILL, then wait for the exit. */
  kill9(): Promise<void>;
  /** SIGTERM (graceful), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** Lines whose msg contains `text`. */
  linesWith(text: string, minLevel?: number): LogLine[];
  /** Count of lines at or above `minLevel` (warn by default) per message. */
  summary(minLevel?: number): Record<string, number>;
}

const children = new Set<ChildProcess>();

process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Ends every child this module started that is still running (by pid). */
export async function killAllChildren(): Promise<void> {
  await Promise.all(
    [...children].map(
      (c) =>
        new Promise<void>((done) => {
          if (c.exitCode !== null || c.signalCode !== null) return done();
          c.once('exit', () => done());
          c.kill('SIGKILL');
        }),
    ),
  );
  children.clear();
}

/** The environment a test child gets: nothing inherited but what node needs, so no stray DATABASE_URL leaks in. */
function childEnv(env: Record<string, string>): Record<string, string> {
  const base: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TSX_TSCONFIG_PATH']) {
    const v = process.env[k];
    if (v !== undefined) base[k] = v;
  }
  // The in-process defaults, with the log on: the port is read from the 'coordinator listening' line.
  // DEV_MODE: dev mode on the test's own database (a database URL alone means production).
  return { ...base, ...TEST_ENV, DEV_MODE: '1', LOG_LEVEL: 'info', LOG_PRETTY: 'false', ...env };
}

/** A coordinator child from the moment it is spawned, before it listens (for signals during startup). */
export interface SpawnedChild {
  name: string;
  proc: ChildProcess;
  logs: LogLine[];
  other: string[];
  /** Everything it printed so far, JSON lines and the rest, in one string. */
  output(): string;
  /** Resolves with the port once it printed 'coordinator listening'; rejects when it exits first. */
  listening: Promise<number>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns a coordinator child and starts reading its output; `startChild` waits for it to listen. */
export function spawnChild(opts: { name: string; env: Record<string, string>; echo?: boolean }): SpawnedChild {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: childEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  const logs: LogLine[] = [];
  const other: string[] = [];
  let text = '';
  const echo = opts.echo ?? Boolean(process.env['TEST_LOG']);
  let onListening: ((port: number) => void) | undefined;

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
    proc.once('exit', (code, signal) => {
      children.delete(proc);
      done({ code, signal });
    });
  });
  const listening = new Promise<number>((resolvePort, reject) => {
    onListening = resolvePort;
    void exited.then(({ code, signal }) => reject(new Error(`${opts.name}: exited (code ${code}, signal ${signal}) before listening:\n${text.slice(-2000)}`)));
  });
  listening.catch(() => undefined); // the caller that waits for it sees the rejection

  let partial = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    text += chunk;
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line) continue;
      if (echo) process.stdout.write(`[${opts.name}] ${line}\n`);
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        other.push(line);
        continue;
      }
      logs.push(parsed);
      if (parsed.msg === 'coordinator listening' && typeof parsed['port'] === 'number') onListening?.(parsed['port']);
    }
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    text += chunk;
    if (echo) process.stderr.write(`[${opts.name}] ${chunk}`);
    other.push(chunk);
  });
  return { name: opts.name, proc, logs, other, output: () => text, listening, exited };
}

/**
 * Starts a coordinator child and resolves once it listens. Rejects (after
 * killing it) when it exits first or does not listen within `readyTimeoutMs`.
 */
export async function startChild(opts: { name: string; env: Record<string, string>; readyTimeoutMs?: number; echo?: boolean }): Promise<ChildCoordinator> {
  const child = spawnChild(opts);
  const { proc, logs, other, exited } = child;
  const timeoutMs = opts.readyTimeoutMs ?? 30_000;
  let port: number;
  let timer: NodeJS.Timeout | undefined;
  try {
    port = await Promise.race([
      child.listening,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${opts.name}: not listening within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err: unknown) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    throw err;
  } finally {
    clearTimeout(timer);
  }

  const url = `http://127.0.0.1:${port}`;
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  return {
    name: opts.name,
    pid: proc.pid!,
    url,
    wsUrl: `ws://127.0.0.1:${port}/v1/ws`,
    port,
    logs,
    other,
    readyAt: Date.now(),
    exited,
    alive,
    async kill9() {
      if (alive()) proc.kill('SIGKILL');
      await exited;
    },
    async stop(graceMs = 10_000) {
      if (!alive()) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (alive()) proc.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
    linesWith(text, minLevel = 0) {
      return logs.filter((l) => l.level >= minLevel && typeof l.msg === 'string' && l.msg.includes(text));
    },
    summary(minLevel = 40) {
      const out: Record<string, number> = {};
      for (const l of logs) if (l.level >= minLevel) out[l.msg] = (out[l.msg] ?? 0) + 1;
      return out;
    },
  };
}
