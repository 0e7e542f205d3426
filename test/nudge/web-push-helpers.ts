/** Shared fixtures for the web-push sender tests: captured logs, keys, local receivers. */
import { createECDH, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';

export function captureLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** A browser-like subscription key pair (p256dh = uncompressed P-256 point, auth = 16 bytes). */
export function subscriptionKeys(): { p256dh: string; auth: string } {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') };
}

export interface Receiver {
  origin: string;
  requests: { path: string; headers: IncomingMessage['headers']; bodyBytes: number }[];
  close(): Promise<void>;
}

/** A loopback http receiver; `reply` decides each answer (or never answers). */
export async function startReceiver(reply: (n: number, req: IncomingMessage, res: ServerResponse) => void): Promise<Receiver> {
  const requests: Receiver['requests'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ path: req.url ?? '', headers: req.headers, bodyBytes: Buffer.concat(chunks).length });
      reply(requests.length, req, res);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

export async function counterValues(registry: Registry): Promise<Record<string, number>> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'mana_ai_push_sends_total');
  const out: Record<string, number> = {};
  for (const v of metric?.values ?? []) out[`${String(v.labels['origin'])} ${String(v.labels['outcome'])}`] = v.value;
  return out;
}

export const newRegistry = () => new Registry();
