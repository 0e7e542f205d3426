import { describe, expect, it } from 'vitest';
import { createInlineEncryptor, createThreadedEncryptor } from '../../src/nudge/web-push-encrypt.js';
import { subscriptionKeys } from './web-push-helpers.js';

// aes128gcm, one record: 86-byte header (salt 16, rs 4, idlen 1, key 65) + plaintext + delimiter + 16-byte tag.
const expectedLength = (plaintext: string) => 86 + Buffer.byteLength(plaintext) + 1 + 16;

describe('payload encryptors', () => {
  it('threaded: encrypts many messages across threads and batches, each for its own recipient', async () => {
    const enc = createThreadedEncryptor({ threads: 2, maxBatch: 16 });
    try {
      const items = Array.from({ length: 200 }, (_, i) => ({ keys: subscriptionKeys(), text: JSON.stringify({ i }) }));
      const bodies = await Promise.all(items.map(({ keys, text }) => enc.encrypt(keys.p256dh, keys.auth, text)));
      bodies.forEach((b, i) => expect(b.length).toBe(expectedLength(items[i]!.text)));
      // Fresh salt and ephemeral key per message: no two bodies share a header.
      expect(new Set(bodies.map((b) => b.subarray(0, 86).toString('hex'))).size).toBe(200);
    } finally {
      await enc.close();
    }
  });

  it('threaded: in a burst bigger than the workers hold, the event loop helps; small bursts stay on the workers', async () => {
    const items = Array.from({ length: 300 }, (_, i) => ({ keys: subscriptionKeys(), text: JSON.stringify({ i }) }));
    const run = async (helpInline: boolean, n: number) => {
      const enc = createThreadedEncryptor({ threads: 1, maxBatch: 8, helpInline });
      try {
        const bodies = await Promise.all(items.slice(0, n).map(({ keys, text }) => enc.encrypt(keys.p256dh, keys.auth, text)));
        bodies.forEach((b, i) => expect(b.length).toBe(expectedLength(items[i]!.text)));
        expect(new Set(bodies.map((b) => b.subarray(0, 86).toString('hex'))).size).toBe(n);
        return enc.counts();
      } finally {
        await enc.close();
      }
    };
    const helped = await run(true, 300);
    expect(helped.inline).toBeGreaterThan(0);
    expect(helped.threaded).toBeGreaterThan(0);
    expect(helped.inline + helped.threaded).toBe(300);
    expect(await run(false, 300)).toEqual({ threaded: 300, inline: 0 });
    expect(await run(true, 5)).toEqual({ threaded: 5, inline: 0 });
  });

  it('threaded: unusable keys reject that message only', async () => {
    const enc = createThreadedEncryptor({ threads: 1 });
    try {
      const good = subscriptionKeys();
      const results = await Promise.allSettled([
        enc.encrypt(good.p256dh, good.auth, 'a'),
        enc.encrypt('AAAA', good.auth, 'b'),
        enc.encrypt(good.p256dh, good.auth, 'c'),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(Error);
    } finally {
      await enc.close();
    }
  });

  it('threaded: close() is idempotent and later calls reject', async () => {
    const enc = createThreadedEncryptor({ threads: 1 });
    const k = subscriptionKeys();
    await enc.encrypt(k.p256dh, k.auth, 'x');
    await enc.close();
    await enc.close();
    await expect(enc.encrypt(k.p256dh, k.auth, 'x')).rejects.toThrow(/closed/);
  });

  it('inline: same format', async () => {
    const enc = createInlineEncryptor();
    const k = subscriptionKeys();
    expect((await enc.encrypt(k.p256dh, k.auth, 'hello')).length).toBe(expectedLength('hello'));
    await enc.close();
  });
});
