/**
 * Runs web-push-testing (a real local push service: it checks the VAPID JWT
 * against the subscription's applicationServerKey, decrypts aes128gcm and
 * stores the plaintext) inside the test process, on a free loopback port.
 *
 * The package's own CLI daemonises on a fixed port (8090) and its server
 * class calls `process.exit` on listen errors, so we take its express app
 * and listen ourselves. Its model lives in a module-level variable: one
 * instance per process (vitest runs each test file in its own worker).
 *
 * Usage:
 *   const wpt = await startWebPushTesting();
 *   allowlist = parseAllowlist(wpt.origin);          // exact origin → loopback allowed
 *   const sub = await wpt.subscribe(vapidPublicKey);  // { endpoint, keys, clientHash }
 *   …send…
 *   await wpt.notifications(sub.clientHash);          // decrypted payloads, in order
 *   await wpt.expire(sub.clientHash);                 // further pushes answer 410
 *   await wpt.close();
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';

export interface TestSubscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
  clientHash: string;
}

export interface WebPushTesting {
  /** `http://127.0.0.1:<port>` — put it in the allowlist as an exact origin. */
  origin: string;
  subscribe(applicationServerKey: string): Promise<TestSubscription>;
  expire(clientHash: string): Promise<void>;
  notifications(clientHash: string): Promise<string[]>;
  close(): Promise<void>;
}

interface TestingServerInstance {
  _app: { listen(port: number, host: string): Server };
  setRequestHandlers(): void;
}

const require = createRequire(import.meta.url);

export async function startWebPushTesting(): Promise<WebPushTesting> {
  const TestingServer = require('web-push-testing/src/server.js') as new (model: unknown, port: number) => TestingServerInstance;
  const { PushApiModel } = require('web-push-testing/src/PushApiModel.js') as { PushApiModel: new () => { notifyUrl: string } };
  const model = new PushApiModel();
  const testing = new TestingServer(model, 0);
  testing.setRequestHandlers();
  const server = testing._app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  model.notifyUrl = `${origin}/notify/`;

  async function call(path: string, body?: unknown): Promise<Response> {
    return fetch(`${origin}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  return {
    origin,
    async subscribe(applicationServerKey) {
      // userVisibleOnly must be the STRING 'true' for this server.
      const res = await call('/subscribe', { applicationServerKey, userVisibleOnly: 'true' });
      if (res.status !== 200) throw new Error(`web-push-testing subscribe: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { data: TestSubscription }).data;
    },
    async expire(clientHash) {
      const res = await call(`/expire-subscription/${clientHash}`);
      if (res.status !== 200) throw new Error(`web-push-testing expire: ${res.status}`);
      await res.arrayBuffer();
    },
    async notifications(clientHash) {
      const res = await call('/get-notifications', { clientHash });
      if (res.status !== 200) throw new Error(`web-push-testing get-notifications: ${res.status}`);
      return ((await res.json()) as { data: { messages: string[] } }).data.messages;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}
