import { describe, expect, it } from 'vitest';
import { createSemaphore } from '../../src/lib/semaphore.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('createSemaphore', () => {
  it('admits up to the limit and queues the rest in arrival order', async () => {
    const sem = createSemaphore(2);
    const order: string[] = [];
    const a = await sem.acquire();
    const b = await sem.acquire();
    expect(sem.held()).toBe(2);
    const [c, d, e] = ['c', 'd', 'e'].map((name) =>
      sem.acquire().then((release) => {
        order.push(name);
        return release;
      }),
    );
    await tick();
    expect(sem.waiting()).toBe(3);
    expect(order).toEqual([]);

    a();
    await tick();
    expect(order).toEqual(['c']);
    expect(sem.held()).toBe(2);
    b();
    await tick();
    expect(order).toEqual(['c', 'd']);
    (await c!)();
    await tick();
    expect(order).toEqual(['c', 'd', 'e']);
    (await d!)();
    (await e!)();
    expect(sem.held()).toBe(0);
    expect(sem.waiting()).toBe(0);
  });

  it('a release called twice frees only one slot', async () => {
    const sem = createSemaphore(1);
    const release = await sem.acquire();
    release();
    release();
    expect(sem.held()).toBe(0);
    const again = await sem.acquire();
    expect(sem.held()).toBe(1);
    again();
  });

  it('an aborted waiter leaves the queue and does not take a slot', async () => {
    const sem = createSemaphore(1);
    const first = await sem.acquire();
    const controller = new AbortController();
    const aborted = sem.acquire(controller.signal);
    const next = sem.acquire();
    await tick();
    controller.abort(new Error('gave up'));
    await expect(aborted).rejects.toThrow('gave up');
    expect(sem.waiting()).toBe(1);
    first();
    const release = await next;
    expect(sem.held()).toBe(1);
    release();
    expect(sem.held()).toBe(0);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const sem = createSemaphore(1);
    await expect(sem.acquire(AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
    expect(sem.held()).toBe(0);
  });

  it('serves keys round-robin: a long backlog of one key delays another key by at most one grant', async () => {
    const sem = createSemaphore(1);
    const order: string[] = [];
    const first = await sem.acquire(undefined, 'a');
    const take = (key: string, name: string) =>
      sem.acquire(undefined, key).then((release) => {
        order.push(name);
        release();
      });
    const backlog = Array.from({ length: 40 }, (_, i) => take('a', `a${i}`));
    await tick();
    const other = take('b', 'b0');
    await tick();
    expect(sem.waiting()).toBe(41);
    first();
    await Promise.all([...backlog, other]);
    expect(order.indexOf('b0')).toBe(1);
    expect(order.filter((n) => n.startsWith('a'))).toEqual(Array.from({ length: 40 }, (_, i) => `a${i}`));
    expect(sem.held()).toBe(0);
    expect(sem.waiting()).toBe(0);
  });

  it('an aborted keyed waiter leaves its key and the rotation goes on', async () => {
    const sem = createSemaphore(1);
    const first = await sem.acquire(undefined, 'a');
    const controller = new AbortController();
    const gone = sem.acquire(controller.signal, 'b');
    const next = sem.acquire(undefined, 'c');
    await tick();
    controller.abort(new Error('stop'));
    await expect(gone).rejects.toThrow('stop');
    expect(sem.waiting()).toBe(1);
    first();
    (await next)();
    expect(sem.held()).toBe(0);
  });

  it.each([0, -1, 1.5, Number.NaN])('refuses limit %s', (limit) => {
    expect(() => createSemaphore(limit)).toThrow(RangeError);
  });
});
