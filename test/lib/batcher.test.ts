/**
 * The batcher: requests of one event-loop turn go together, no more than
 * `concurrency` batches run at once, a key is never in two batches in
 * flight nor twice in one, and a failed batch fails only its own requests.
 */
import { describe, expect, it } from 'vitest';
import { createBatcher } from '../../src/lib/batcher.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

function recorder(opts: { maxBatch?: number; concurrency?: number; failOn?: string } = {}) {
  const batches: string[][] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const inFlightKeys = new Set<string>();
  let overlap = false;
  const submit = createBatcher<{ key: string; n: number }, string>({
    key: (i) => i.key,
    maxBatch: opts.maxBatch ?? 100,
    concurrency: opts.concurrency ?? 2,
    async run(items) {
      batches.push(items.map((i) => `${i.key}#${i.n}`));
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      for (const i of items) {
        if (inFlightKeys.has(i.key)) overlap = true;
        inFlightKeys.add(i.key);
      }
      await tick();
      for (const i of items) inFlightKeys.delete(i.key);
      inFlight--;
      if (items.some((i) => i.key === opts.failOn)) throw new Error('statement failed');
      return items.map((i) => `done ${i.key}#${i.n}`);
    },
  });
  return { submit, batches, maxInFlight: () => maxInFlight, overlap: () => overlap };
}

describe('createBatcher', () => {
  it('sends the requests of one turn in one batch and answers each with its own result', async () => {
    const r = recorder();
    const out = await Promise.all(['a', 'b', 'c'].map((key) => r.submit({ key, n: 1 })));
    expect(out).toEqual(['done a#1', 'done b#1', 'done c#1']);
    expect(r.batches).toEqual([['a#1', 'b#1', 'c#1']]);
  });

  it('caps batch size and batches in flight; requests waiting meanwhile go together', async () => {
    const r = recorder({ maxBatch: 10, concurrency: 2 });
    const all = Array.from({ length: 95 }, (_, i) => r.submit({ key: `k${i}`, n: i }));
    expect(await Promise.all(all)).toHaveLength(95);
    expect(r.maxInFlight()).toBe(2);
    expect(r.batches.every((b) => b.length <= 10)).toBe(true);
    expect(r.batches.flat()).toHaveLength(95);
  });

  it('never puts one key in two batches in flight or twice in one batch, and answers it in order', async () => {
    const r = recorder({ maxBatch: 50, concurrency: 3 });
    const order: string[] = [];
    const all = Array.from({ length: 30 }, (_, i) => r.submit({ key: `k${i % 3}`, n: i }).then((o) => order.push(o)));
    await Promise.all(all);
    expect(r.overlap()).toBe(false);
    for (const b of r.batches) expect(new Set(b.map((x) => x.split('#')[0])).size).toBe(b.length);
    const k0 = order.filter((o) => o.startsWith('done k0#')).map((o) => Number(o.split('#')[1]));
    expect(k0).toEqual([...k0].sort((a, b) => a - b));
  });

  it('a failed batch rejects its own requests only', async () => {
    const r = recorder({ maxBatch: 2, concurrency: 1, failOn: 'bad' });
    const results = await Promise.allSettled([r.submit({ key: 'bad', n: 1 }), r.submit({ key: 'x', n: 1 }), r.submit({ key: 'y', n: 1 })]);
    expect(results.map((s) => s.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ message: 'statement failed' });
  });

  it('a batch answered with the wrong number of results rejects its requests, naming both counts', async () => {
    const submit = createBatcher<number, number>({ key: String, maxBatch: 10, concurrency: 1, run: async () => [1] });
    const results = await Promise.allSettled([submit(1), submit(2)]);
    expect(results.every((s) => s.status === 'rejected')).toBe(true);
    expect((results[0] as PromiseRejectedResult).reason.message).toMatch(/batch of 2 items was answered with 1 results/);
  });
});
