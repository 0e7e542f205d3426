/**
 * A pino logger whose lines a test reads back, each parsed from its JSON.
 */
import { Writable } from 'node:stream';
import { pino, type Level, type Logger } from 'pino';

export function captureLog(level: Level): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level }, stream), lines };
}
