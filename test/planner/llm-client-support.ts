/**
 * A tiny OpenAI-compatible server for the LLM client's own tests: scripted
 * replies per request (ok, status, hang, raw body), the requests it saw, and
 * the most it served at once; plus a client harness with recorded sleeps and
 * log lines. (test/support/llm-stub.ts is the planner's stub for whole
 * coordinators; this one scripts single HTTP exchanges.)
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { LlmError } from '../../src/planner/llm-client.js';
import type { ChatMessage, LlmClientDeps } from '../../src/planner/llm-client.js';
export const SERVICE_KEY = 'sk-live-SECRET-7f3a9c';
export const PRIVATE_TEXT = 'MY-PRIVATE-NOTE-about-my-divorce';
export const MESSAGES: ChatMessage[] = [
  { role: 'system', content: 'You plan.' },
  { role: 'user', content: PRIVATE_TEXT },
];

export type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

export interface Stub {
  url: string;
  requests: { method?: string; url?: string; authorization?: string; body: unknown }[];
  maxConcurrent: number;
  /** Handlers for successive requests; the last one repeats. */
  respond(...handlers: Handler[]): void;
  close(): Promise<void>;
}

const stubs: Stub[] = [];

export async function startStub(): Promise<Stub> {
  let handlers: Handler[] = [ok('hello')];
  let active = 0;
  const stub: Stub = {
    url: '',
    requests: [],
    maxConcurrent: 0,
    respond(...hs) {
      handlers = hs;
    },
    close: async () => undefined,
  };
  const server: Server = createServer((req, res) => {
    active++;
    stub.maxConcurrent = Math.max(stub.maxConcurrent, active);
    res.on('close', () => active--);
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    req.on('end', () => {
      const n = stub.requests.length;
      stub.requests.push({ method: req.method, url: req.url, authorization: req.headers.authorization, body: JSON.parse(raw) });
      (handlers[Math.min(n, handlers.length - 1)] ?? ok(''))(req, res, n);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  stub.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  stubs.push(stub);
  return stub;
}

/** Closes every stub this file's tests started (each test file calls it after each test). */
export async function closeStubs(): Promise<void> {
  await Promise.all(stubs.splice(0).map((s) => s.close()));
}

export function ok(content: string, delayMs = 0): Handler {
  return (_req, res) => {
    const send = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'c1', choices: [{ index: 0, message: { role: 'assistant', content } }] }));
    };
    if (delayMs > 0) setTimeout(send, delayMs);
    else send();
  };
}

export function status(code: number, headers: Record<string, string> = {}, body = '{"error":"nope"}'): Handler {
  return (_req, res) => {
    res.writeHead(code, { 'content-type': 'application/json', ...headers });
    res.end(body);
  };
}

export const hang: Handler = () => undefined;

export function rawBody(body: string): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(body);
  };
}

export interface Harness {
  deps: LlmClientDeps;
  sleeps: number[];
  logLines: string[];
  registry: Registry;
}

export function harness(url: string, extra: Partial<LlmClientDeps> = {}): Harness {
  const sleeps: number[] = [];
  const logLines: string[] = [];
  const registry = new Registry();
  const log = pino({ level: 'trace' }, { write: (line: string) => void logLines.push(line) });
  return {
    sleeps,
    logLines,
    registry,
    deps: {
      url,
      serviceKey: SERVICE_KEY,
      model: 'mana-planner-1',
      timeoutMs: 2_000,
      concurrency: 4,
      maxRetries: 3,
      registry,
      log,
      sleep: async (ms) => void sleeps.push(ms),
      random: () => 0.5,
      ...extra,
    },
  };
}

export async function failure(promise: Promise<unknown>): Promise<LlmError> {
  try {
    await promise;
  } catch (e: unknown) {
    if (e instanceof LlmError) return e;
    throw e;
  }
  throw new Error('expected the call to fail');
}

export async function counter(registry: Registry, outcome: string): Promise<number> {
  const metric = await registry.getSingleMetric('mana_ai_llm_requests_total')?.get();
  return metric?.values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;
}
