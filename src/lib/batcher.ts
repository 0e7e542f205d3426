/**
 * Coalesces concurrent requests into batches, so that 10,000 devices
 * claiming at the top of an hour cost a few statements, not 10,000 round
 * trips queued on the pool ahead of the scheduler's own queries.
 *
 * Requests made in one turn of the event loop go together (the batch starts
 * on setImmediate); while `concurrency` batches are in flight, new requests
 * wait and go in the next one, at most `maxBatch` each. Two requests with
 * the same key are never in one batch nor in two batches in flight at once
 * (the later waits for the earlier), so batches never contend for one row
 * and the first request for a key is answered first.
 */
export interface BatcherOptions<I, O> {
  /** Runs one batch; returns one output per item, in the items' order. */
  run: (items: I[]) => Promise<O[]>;
  key: (item: I) => string;
  maxBatch: number;
  concurrency: number;
}

interface Pending<I, O> {
  item: I;
  key: string;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

export function createBatcher<I, O>(opts: BatcherOptions<I, O>): (item: I) => Promise<O> {
  let queue: Pending<I, O>[] = [];
  const busy = new Set<string>();
  let running = 0;
  let scheduled = false;

  function take(): Pending<I, O>[] {
    const batch: Pending<I, O>[] = [];
    const keys = new Set<string>();
    const rest: Pending<I, O>[] = [];
    for (const p of queue) {
      if (batch.length < opts.maxBatch && !busy.has(p.key) && !keys.has(p.key)) {
        batch.push(p);
        keys.add(p.key);
      } else rest.push(p);
    }
    queue = rest;
    return batch;
  }

  function pump(): void {
    scheduled = false;
    while (running < opts.concurrency && queue.length > 0) {
      const batch = take();
      if (batch.length === 0) return;
      for (const p of batch) busy.add(p.key);
      running++;
      opts
        .run(batch.map((p) => p.item))
        .then((outs) => {
          if (outs.length !== batch.length) throw new Error(`a batch of ${batch.length} items was answered with ${outs.length} results`);
          batch.forEach((p, i) => p.resolve(outs[i]!));
        })
        .catch((err: unknown) => {
          for (const p of batch) p.reject(err);
        })
        .finally(() => {
          running--;
          for (const p of batch) busy.delete(p.key);
          pump();
        });
    }
  }

  return (item) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, key: opts.key(item), resolve, reject });
      if (!scheduled && running < opts.concurrency) {
        scheduled = true;
        setImmediate(pump);
      }
    });
}
