/**
 * The sender against web-push-testing, a real local push service that checks
 * the VAPID JWT and decrypts aes128gcm.
 */
import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseAllowlist } from '../../src/devices/endpoint-guard.js';
import { createVapidHeaders, generateVapidKeys } from '../../src/nudge/vapid.js';
import { createPushSender, topicForMission, type PushSender } from '../../src/nudge/web-push.js';
import { captureLog, counterValues, newRegistry, startReceiver } from './web-push-helpers.js';
import { startWebPushTesting, type WebPushTesting } from './web-push-testing-server.js';

const keys = generateVapidKeys();
let wpt: WebPushTesting;

beforeAll(async () => {
  wpt = await startWebPushTesting();
});
afterAll(async () => {
  await wpt.close();
});

function makeSender(extra: { origins?: string[] } = {}) {
  const registry = newRegistry();
  const { log, lines } = captureLog();
  const vapid = createVapidHeaders({ ...keys, subject: 'mailto:ops@mana.example' });
  const sender = createPushSender({
    vapid,
    allowlist: parseAllowlist([wpt.origin, ...(extra.origins ?? [])].join(',')),
    registry,
    log,
  });
  return { sender, registry, lines };
}

const nudge = (n = 1) => ({
  type: 'mission-due',
  missionId: `mission-${n}`,
  iterationId: '6f1c1f0e-6a53-5d0e-9a3b-2f4f1f5b7a10',
  dueAt: '2025-11-25T09:00:00.000Z',
});

describe('web push against web-push-testing', () => {
  let sender: PushSender;
  afterAll(async () => sender?.close());

  it('delivers a push that the push service decrypts to exactly the payload', async () => {
    const made = makeSender();
    sender = made.sender;
    const sub = await wpt.subscribe(keys.publicKey);
    const outcome = await sender.send(sub, nudge(), { ttlSeconds: 120, topic: topicForMission('mission-1') });
    expect(outcome).toEqual({ kind: 'delivered', status: 201, attempts: 1 });
    expect(await wpt.notifications(sub.clientHash)).toEqual([JSON.stringify(nudge())]);
    expect(await counterValues(made.registry)).toEqual({ [`${wpt.origin} delivered`]: 1 });

    // Logs name the origin only: never the endpoint path (a bearer secret) or the keys.
    const logged = made.lines.join('');
    expect(logged).toContain(wpt.origin);
    for (const secret of [sub.clientHash, sub.keys.p256dh, sub.keys.auth]) expect(logged).not.toContain(secret);
  });

  it('reports an expired subscription as gone (410), without retrying', async () => {
    const sub = await wpt.subscribe(keys.publicKey);
    await wpt.expire(sub.clientHash);
    expect(await sender.send(sub, nudge(), { ttlSeconds: 120 })).toEqual({ kind: 'gone', status: 410, attempts: 1 });
  });

  it('signs one VAPID JWT per audience across many sends, and the push service accepts it every time', async () => {
    const { sender: s2 } = makeSender();
    const spy = vi.spyOn(webpush, 'getVapidHeaders');
    try {
      const subs = await Promise.all(Array.from({ length: 5 }, () => wpt.subscribe(keys.publicKey)));
      const outcomes = await Promise.all(
        Array.from({ length: 40 }, (_, i) => s2.send(subs[i % subs.length]!, nudge(i), { ttlSeconds: 60 })),
      );
      expect(outcomes.every((o) => o.kind === 'delivered')).toBe(true);
      expect(spy).toHaveBeenCalledTimes(1);
      expect(spy.mock.calls[0]?.[0]).toBe(wpt.origin);
      const received = (await Promise.all(subs.map((s) => wpt.notifications(s.clientHash)))).flat();
      expect(received).toHaveLength(40);

      // A second audience gets its own JWT (aud must be the push service's origin).
      const other = await startReceiver((_n, _req, res) => res.writeHead(201).end());
      const { sender: s3 } = makeSender({ origins: [other.origin] });
      await s3.send({ endpoint: `${other.origin}/p/1`, keys: subs[0]!.keys }, nudge(), { ttlSeconds: 60 });
      await s3.send({ endpoint: `${wpt.origin}/notify/${subs[0]!.clientHash}`, keys: subs[0]!.keys }, nudge(), { ttlSeconds: 60 });
      await s3.send({ endpoint: `${other.origin}/p/2`, keys: subs[0]!.keys }, nudge(), { ttlSeconds: 60 });
      expect(spy.mock.calls.map((c) => c[0])).toEqual([wpt.origin, other.origin, wpt.origin]);
      await s3.close();
      await other.close();
    } finally {
      spy.mockRestore();
      await s2.close();
    }
  });
});

describe.each([0, 2])('decryptable with encryptThreads = %i', (encryptThreads) => {
  it('web-push-testing decrypts every message to exactly its payload', async () => {
    const sender = createPushSender({
      vapid: createVapidHeaders({ ...keys, subject: 'mailto:ops@mana.example' }),
      allowlist: parseAllowlist(wpt.origin),
      registry: newRegistry(),
      log: captureLog().log,
      encryptThreads,
    });
    const subs = await Promise.all([1, 2, 3].map(() => wpt.subscribe(keys.publicKey)));
    const outcomes = await Promise.all(subs.map((sub, i) => sender.send(sub, nudge(i), { ttlSeconds: 30 })));
    await sender.close();
    expect(outcomes.map((o) => o.kind)).toEqual(['delivered', 'delivered', 'delivered']);
    for (const [i, sub] of subs.entries()) expect(await wpt.notifications(sub.clientHash)).toEqual([JSON.stringify(nudge(i))]);
  });
});

describe('request shape', () => {
  it('sends aes128gcm with TTL, Urgency, Topic and a vapid Authorization, like web-push would', async () => {
    const rx = await startReceiver((_n, _req, res) => res.writeHead(201).end());
    const { sender } = makeSender({ origins: [rx.origin] });
    const sub = await wpt.subscribe(keys.publicKey);
    const topic = topicForMission('mission-7');
    await sender.send({ endpoint: `${rx.origin}/push/abc?x=1`, keys: sub.keys }, nudge(7), { ttlSeconds: 120, topic });
    await sender.send({ endpoint: `${rx.origin}/push/abc`, keys: sub.keys }, nudge(7), { ttlSeconds: 0, urgency: 'low' });
    await sender.close();
    await rx.close();

    const [first, second] = rx.requests;
    expect(first?.path).toBe('/push/abc?x=1');
    expect(first?.headers).toMatchObject({
      'content-encoding': 'aes128gcm',
      'content-type': 'application/octet-stream',
      ttl: '120',
      urgency: 'high',
      topic,
      authorization: expect.stringMatching(new RegExp(`^vapid t=[\\w-]+\\.[\\w-]+\\.[\\w-]+, k=${keys.publicKey}$`)),
    });
    // 86-byte aes128gcm header + ciphertext + 16-byte tag for a small payload.
    expect(first?.bodyBytes).toBe(86 + Buffer.byteLength(JSON.stringify(nudge(7))) + 1 + 16);
    expect(second?.headers).toMatchObject({ ttl: '0', urgency: 'low' });
    expect(second?.headers['topic']).toBeUndefined();
  });

  it('topicForMission is a stable 32-character base64url digest', () => {
    const t = topicForMission('mission-42');
    expect(t).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(topicForMission('mission-42')).toBe(t);
    expect(topicForMission('mission-43')).not.toBe(t);
  });

  it('refuses invalid options, payloads and keys without a request', async () => {
    const rx = await startReceiver((_n, _req, res) => res.writeHead(201).end());
    const { sender } = makeSender({ origins: [rx.origin] });
    const sub = await wpt.subscribe(keys.publicKey);
    const endpoint = `${rx.origin}/push/abc`;
    expect(await sender.send({ endpoint, keys: sub.keys }, nudge(), { ttlSeconds: 60, topic: 'has spaces' })).toMatchObject({
      kind: 'failed',
      reason: 'invalid-request',
      retryable: false,
    });
    expect(await sender.send({ endpoint, keys: sub.keys }, nudge(), { ttlSeconds: -1 })).toMatchObject({ reason: 'invalid-request' });
    expect(await sender.send({ endpoint, keys: sub.keys }, { big: 'x'.repeat(4000) }, { ttlSeconds: 60 })).toMatchObject({
      reason: 'payload-too-large',
    });
    expect(await sender.send({ endpoint, keys: { p256dh: 'AAAA', auth: sub.keys.auth } }, nudge(), { ttlSeconds: 60 })).toMatchObject({
      reason: 'invalid-subscription',
      retryable: false,
    });
    expect(rx.requests).toHaveLength(0);
    await sender.close();
    expect(await sender.send({ endpoint, keys: sub.keys }, nudge(), { ttlSeconds: 60 })).toMatchObject({ reason: 'sender-closed' });
    await sender.close();
    await rx.close();
  });
});
