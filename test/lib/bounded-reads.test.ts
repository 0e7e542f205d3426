/**
 * Upstream replies are read up to a limit, over real HTTP: mana-llm answering
 * with an endless body (no Content-Length) or a declared 2 MiB one is a failed
 * attempt at the limit, not a hang until the timeout or a memory spike; a
 * JWKS endpoint doing the same is a failed refresh. The server counts what
 * it managed to send before the client hung up.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLlmClient, LlmError } from '../../src/planner/llm-client.js';
import { createJwksCache, JwksError } from '../../src/auth/jwks-cache.js';
import { Readable } from 'node:stream';
import { readBoundedStream, readBoundedText } from '../../src/lib/bounded-body.js';

const CHUNK = Buffer.alloc(64 * 1024, 0x61);
let server: Server;
let base: string;
/** Bytes the endless route wrote before its client went away, per request. */
const written: number[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    res.on('error', () => undefined);
    if (req.url?.startsWith('/declared')) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(2 * 1024 * 1024) });
      res.write(CHUNK);
      return; // never finishes: only the header should matter
    }
    if (req.url?.startsWith('/small')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ choices: [{ message: { content: 'fine' } }] }));
      return;
    }
    // Endless: chunks as fast as the client reads, until it hangs up.
    res.writeHead(200, { 'content-type': 'application/json' });
    let n = 0;
    const i = written.push(0) - 1;
    const pump = () => {
      while (!res.destroyed && res.write(CHUNK)) {
        n += CHUNK.length;
        written[i] = n;
        if (n > 64 * 1024 * 1024) return res.end();
      }
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function llm(url: string, maxResponseBytes?: number) {
  return createLlmClient({
    url,
    serviceKey: 'k',
    model: 'm',
    timeoutMs: 20_000,
    concurrency: 1,
    maxRetries: 0,
    registry: new Registry(),
    log: pino({ level: 'silent' }),
    ...(maxResponseBytes === undefined ? {} : { maxResponseBytes }),
  });
}

describe('mana-llm replies', () => {
  it('an endless reply is a failed attempt at the 1 MiB default, long before the timeout', async () => {
    const err = await llm(`${base}/endless`).complete([{ role: 'user', content: 'hi' }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    expect(err).toMatchObject({ kind: 'bad-reply', retryable: false, attempts: 1 });
    expect((err as Error).message).toContain(`at most ${1024 * 1024} bytes`);
    // The stream was cut near the limit, not read to its 64 MiB end.
    expect(written.at(-1)!).toBeLessThan(16 * 1024 * 1024);
  });

  it('a declared Content-Length over the limit is refused without reading the body', async () => {
    const err = await llm(`${base}/declared`).complete([{ role: 'user', content: 'hi' }]).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'bad-reply' });
    expect((err as Error).message).toContain('at most');
  });

  it('a reply within the limit is read', async () => {
    await expect(llm(`${base}/small`, 1024).complete([{ role: 'user', content: 'hi' }])).resolves.toMatchObject({ content: 'fine' });
  });
});

describe('JWKS responses', () => {
  it('an endless JWKS is a failed refresh, reported as jwks-unavailable with the limit', async () => {
    const cache = createJwksCache({
      url: `${base}/endless-jwks`,
      fetch,
      now: Date.now,
      ttlMs: 60_000,
      unknownKidCooldownMs: 1000,
      failureRetryMs: 1000,
      fetchTimeoutMs: 20_000,
      maxBytes: 64 * 1024,
    });
    const err = await cache.keyFor('EdDSA', 'k1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JwksError);
    expect(err).toMatchObject({ code: 'jwks-unavailable' });
    expect((err as Error).message).toContain(`at most ${64 * 1024} bytes`);
  });
});

describe('readBoundedText', () => {
  it('reads exactly up to the limit and refuses one byte more', async () => {
    expect(await readBoundedText(new Response('x'.repeat(10)), 10)).toBe('x'.repeat(10));
    await expect(readBoundedText(new Response('x'.repeat(11)), 10)).rejects.toThrow('at most 10 bytes');
    expect(await readBoundedText(new Response(null), 10)).toBe('');
  });
});

describe('readBoundedStream', () => {
  const bytes = (...parts: string[]) => Readable.from(parts.map((p) => Buffer.from(p)));

  it('reads exactly up to the limit across chunks, refuses one byte more and destroys the stream', async () => {
    expect(await readBoundedStream(bytes('xxxx', 'xxxxxx'), undefined, 10)).toBe('x'.repeat(10));
    const over = bytes('xxxxxx', 'xxxxx');
    await expect(readBoundedStream(over, undefined, 10)).rejects.toThrow('at most 10 bytes');
    expect(over.destroyed).toBe(true);
    expect(await readBoundedStream(bytes(), undefined, 10)).toBe('');
  });

  it('refuses a declared length over the limit without reading', async () => {
    const declared = bytes('x');
    await expect(readBoundedStream(declared, '11', 10)).rejects.toThrow('at most 10 bytes');
    expect(declared.destroyed).toBe(true);
  });
});
