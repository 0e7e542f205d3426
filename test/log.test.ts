/**
 * The log format: readable lines on a terminal, JSON anywhere else, and JSON
 * (with one warning) when pino-pretty is not installed, as in production.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, loadPrettyFactory, wantsPretty, type LogOutput } from '../src/log.js';

function capture(isTTY: boolean): LogOutput & { text(): string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return Object.assign(stream, { isTTY, text: () => chunks.join('') });
}

describe('log format', () => {
  it('is readable on a terminal and JSON elsewhere unless LOG_PRETTY says otherwise', () => {
    expect(wantsPretty(undefined, true)).toBe(true);
    expect(wantsPretty(undefined, false)).toBe(false);
    expect(wantsPretty(false, true)).toBe(false);
    expect(wantsPretty(true, false)).toBe(true);
  });

  it('writes JSON lines when the output is not a terminal', () => {
    const out = capture(false);
    createLogger({ level: 'info', pretty: undefined }, out).info({ token: 'abc' }, 'hello');
    const line = JSON.parse(out.text().trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ msg: 'hello', level: 30, token: '[redacted]' });
  });

  it('writes readable lines on a terminal, still redacted', () => {
    const out = capture(true);
    createLogger({ level: 'info', pretty: undefined, base: { service: 'mana-ai' } }, out).info({ token: 'abc', port: 3066 }, 'hello');
    const text = out.text();
    expect(() => JSON.parse(text.trim())).toThrow();
    expect(text).toContain('INFO');
    expect(text).toContain('hello');
    expect(text).toContain('3066');
    expect(text).not.toContain('abc');
  });

  it('falls back to JSON with one warning when pino-pretty is missing', () => {
    const out = capture(true);
    createLogger({ level: 'info', pretty: undefined }, out, () => null).info('hello');
    const lines = out.text().trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(lines.map((l) => l.level)).toEqual([40, 30]);
    expect(lines[0]!.msg).toContain('pino-pretty');
    expect(lines[1]!.msg).toBe('hello');
  });

  it('loads pino-pretty only when it resolves', () => {
    expect(typeof loadPrettyFactory()).toBe('function');
    expect(
      loadPrettyFactory(() => {
        throw Object.assign(new Error("Cannot find module 'pino-pretty'"), { code: 'MODULE_NOT_FOUND' });
      }),
    ).toBeNull();
  });
});
