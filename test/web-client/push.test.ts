import { describe, expect, it } from 'vitest';
import { bytesToBase64Url, base64UrlToBytes } from '../../web-client/src/lib/base64url.js';
import { createApi, type FetchLike } from '../../web-client/src/lib/http.js';
import { disablePushSubscription, enablePushSubscription } from '../../web-client/src/lib/push-enable.js';
import type { PushManagerLike, PushSubscriptionLike } from '../../web-client/src/lib/push.js';

const KEY_A = new Uint8Array(65).fill(4);
const KEY_B = new Uint8Array(65).fill(7);

function fakeServer(opts: { vapid?: Uint8Array | null } = {}) {
  const calls: { method: string; path: string; body?: unknown; auth?: string | null }[] = [];
  const fetch: FetchLike = async (input, init) => {
    const path = new URL(input).pathname;
    const headers = new Headers(init?.headers);
    calls.push({ method: init?.method ?? 'GET', path, body: init?.body ? JSON.parse(String(init.body)) : undefined, auth: headers.get('authorization') });
    if (path === '/v1/push/vapid-public-key') {
      if (opts.vapid === null) return new Response(JSON.stringify({ error: { code: 'push_disabled', message: '' } }), { status: 404 });
      return Response.json({ publicKey: bytesToBase64Url(opts.vapid ?? KEY_A) });
    }
    if (init?.method === 'DELETE') return new Response(null, { status: 204 });
    return Response.json({ ok: true }, { status: 201 });
  };
  return { calls, api: createApi({ baseUrl: 'http://coord.test', getToken: async () => 'tok', fetch }) };
}

function fakePushManager(existingKey?: Uint8Array, subscribe?: () => Promise<PushSubscriptionLike>) {
  const log: string[] = [];
  const make = (key: ArrayBuffer, endpoint: string): PushSubscriptionLike => ({
    endpoint,
    options: { applicationServerKey: key },
    toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh: 'p', auth: 'a' } }),
    unsubscribe: async () => {
      log.push(`unsubscribe ${endpoint}`);
      current = null;
      return true;
    },
  });
  let current: PushSubscriptionLike | null = existingKey ? make(existingKey.slice().buffer, 'https://push.test/old') : null;
  const pm: PushManagerLike = {
    async getSubscription() {
      return current;
    },
    async subscribe(options) {
      log.push('subscribe');
      if (subscribe) return subscribe();
      const key = options.applicationServerKey as Uint8Array;
      current = make(key.slice().buffer, 'https://push.test/new');
      return current;
    },
  };
  return { pm, log };
}

describe('enablePushSubscription', () => {
  it('subscribes with userVisibleOnly and registers the subscription', async () => {
    const server = fakeServer();
    const { pm, log } = fakePushManager();
    const result = await enablePushSubscription({ api: server.api, deviceId: 'dev-1', pushManager: pm });
    expect(result).toEqual({ endpoint: 'https://push.test/new', renewed: false, created: true });
    expect(log).toEqual(['subscribe']);
    const put = server.calls.find((c) => c.method === 'PUT');
    expect(put).toMatchObject({ path: '/v1/devices/dev-1/push-subscription', auth: 'Bearer tok' });
    expect(put?.body).toEqual({ endpoint: 'https://push.test/new', expirationTime: null, keys: { p256dh: 'p', auth: 'a' } });
    // The VAPID key is public: no token sent for it.
    expect(server.calls[0]).toMatchObject({ path: '/v1/push/vapid-public-key', auth: null });
  });

  it('reuses a subscription made for the current key', async () => {
    const server = fakeServer();
    const { pm, log } = fakePushManager(KEY_A);
    expect(await enablePushSubscription({ api: server.api, deviceId: 'd', pushManager: pm })).toMatchObject({ created: false, renewed: false });
    expect(log).toEqual([]);
  });

  it('re-subscribes when the server key rotated', async () => {
    const server = fakeServer({ vapid: KEY_B });
    const { pm, log } = fakePushManager(KEY_A);
    expect(await enablePushSubscription({ api: server.api, deviceId: 'd', pushManager: pm })).toMatchObject({ created: true, renewed: true });
    expect(log).toEqual(['unsubscribe https://push.test/old', 'subscribe']);
  });

  it('fails clearly when subscribe hangs (offline Chromium)', async () => {
    const server = fakeServer();
    const { pm } = fakePushManager(undefined, () => new Promise(() => undefined));
    await expect(enablePushSubscription({ api: server.api, deviceId: 'd', pushManager: pm, timeoutMs: 20 })).rejects.toMatchObject({
      name: 'PushError',
      code: 'subscribe-timeout',
    });
    expect(server.calls.some((c) => c.method === 'PUT')).toBe(false);
  });

  it('wraps a subscribe failure', async () => {
    const server = fakeServer();
    const { pm } = fakePushManager(undefined, () => Promise.reject(new Error('Registration failed - permission denied')));
    await expect(enablePushSubscription({ api: server.api, deviceId: 'd', pushManager: pm })).rejects.toMatchObject({
      code: 'subscribe-failed',
      message: expect.stringContaining('permission denied'),
    });
  });

  it('says so when push is off on the server', async () => {
    const server = fakeServer({ vapid: null });
    const { pm } = fakePushManager();
    await expect(enablePushSubscription({ api: server.api, deviceId: 'd', pushManager: pm })).rejects.toMatchObject({ code: 'push-disabled' });
  });
});

describe('disablePushSubscription', () => {
  it('unsubscribes and deletes the server copy', async () => {
    const server = fakeServer();
    const { pm, log } = fakePushManager(KEY_A);
    await disablePushSubscription({ api: server.api, deviceId: 'dev-1', pushManager: pm });
    expect(log).toEqual(['unsubscribe https://push.test/old']);
    expect(server.calls.at(-1)).toMatchObject({ method: 'DELETE', path: '/v1/devices/dev-1/push-subscription' });
  });
});

describe('base64url', () => {
  it('round-trips a P-256 point', () => {
    const bytes = Uint8Array.from({ length: 65 }, (_, i) => (i * 37) % 256);
    const text = bytesToBase64Url(bytes);
    expect(text).not.toMatch(/[+/=]/);
    expect(base64UrlToBytes(text)).toEqual(bytes);
  });
});
