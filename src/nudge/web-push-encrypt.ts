/**
 * Payload encryption for Web Push (aes128gcm, RFC 8291) with `web-push`'s
 * `encrypt`, either inline or on worker threads.
 *
 * Each message costs an ECDH key generation plus an ECDH agreement with the
 * recipient's key (~0.2 ms of CPU). A burst of 2,000 wake-ups inline would
 * block the event loop — and with it WebSocket heartbeats and HTTP — for
 * ~0.4 s. The threaded encryptor batches requests to workers and keeps the
 * loop free for the network side; in a long burst the loop helps with what
 * the workers cannot take yet.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import webpush from 'web-push';

export interface PayloadEncryptor {
  /** The aes128gcm body for one recipient; rejects when the keys are unusable. */
  encrypt(p256dh: string, auth: string, plaintext: string): Promise<Buffer>;
  /** Terminates workers; pending encryptions reject. Safe to call twice. */
  close(): Promise<void>;
}

/** One aes128gcm body on this thread (the worker source below does the same in its own realm). */
function encryptPayload(p256dh: string, auth: string, plaintext: string): Buffer {
  return webpush.encrypt(p256dh, auth, plaintext, 'aes128gcm').cipherText;
}

/** Encrypts on the calling thread. */
export function createInlineEncryptor(): PayloadEncryptor {
  return {
    async encrypt(p256dh, auth, plaintext) {
      return encryptPayload(p256dh, auth, plaintext);
    },
    async close() {},
  };
}

/** A sensible worker count: one less than the cores, at least 1, at most 4. */
export function defaultEncryptThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

// Plain CommonJS so it runs the same under tsx, vitest and the built output.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const webpush = require(workerData.webPushPath);
parentPort.on('message', ({ id, items }) => {
  const results = [];
  const transfer = [];
  for (const [p256dh, auth, text] of items) {
    try {
      const buf = webpush.encrypt(p256dh, auth, text, 'aes128gcm').cipherText;
      const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
      results.push(ab);
      transfer.push(ab);
    } catch (e) {
      results.push(String((e && e.message) || e));
    }
  }
  parentPort.postMessage({ id, results }, transfer);
});
`;

/** Batches a worker holds at most: one being encrypted, one ready behind it; the rest waits in the queue. */
const MAX_BATCHES_PER_WORKER = 2;

interface Job {
  item: [string, string, string];
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

interface Thread {
  worker: Worker;
  inFlight: Map<number, Job[]>;
}

function encryptInline(job: Job): void {
  try {
    job.resolve(encryptPayload(...job.item));
  } catch (e: unknown) {
    job.reject(e instanceof Error ? e : new Error(String(e)));
  }
}

export interface ThreadedEncryptor extends PayloadEncryptor {
  /** Messages encrypted so far on workers and on the event loop (help). */
  counts(): { threaded: number; inline: number };
}

export interface ThreadedEncryptorOptions {
  /** Worker threads, started on first use. Default {@link defaultEncryptThreads}. */
  threads?: number;
  /** Messages per hand-off to a worker. Default 32. */
  maxBatch?: number;
  /**
   * When every worker already has two batches in flight, the event loop takes
   * one queued message per turn itself (default true). During a burst the
   * loop is otherwise half idle waiting for the workers, and the workers'
   * cores are the limit; one encryption (~0.2 ms) between two turns keeps
   * I/O latency low. Single messages and small bursts never run inline.
   */
  helpInline?: boolean;
}

/**
 * Encrypts on worker threads in batches collected within one event-loop
 * turn; each worker holds at most two batches, so the queue stays here,
 * where an idle worker or the helping event loop can take from it. Idle
 * workers do not keep the process alive.
 */
export function createThreadedEncryptor(opts: ThreadedEncryptorOptions = {}): ThreadedEncryptor {
  const size = Math.max(1, opts.threads ?? defaultEncryptThreads());
  const maxBatch = opts.maxBatch ?? 32;
  const helpInline = opts.helpInline ?? true;
  const webPushPath = createRequire(import.meta.url).resolve('web-push');
  const threads: Thread[] = [];
  // A FIFO as an array plus a head index: workers take from the head, the loop's help from the tail.
  let queue: Job[] = [];
  let head = 0;
  let flushScheduled: NodeJS.Immediate | undefined;
  let helpScheduled: NodeJS.Immediate | undefined;
  let nextId = 1;
  let closed = false;
  const done = { threaded: 0, inline: 0 };

  function spawn(): Thread {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { webPushPath } });
    const thread: Thread = { worker, inFlight: new Map() };
    worker.on('message', ({ id, results }: { id: number; results: (ArrayBuffer | string)[] }) => {
      const jobs = thread.inFlight.get(id);
      if (jobs === undefined) return;
      thread.inFlight.delete(id);
      done.threaded += jobs.length;
      jobs.forEach((job, i) => {
        const r = results[i];
        if (r instanceof ArrayBuffer) job.resolve(Buffer.from(r));
        else job.reject(new Error(r ?? 'encryption failed'));
      });
      pump();
      if (thread.inFlight.size === 0) worker.unref();
    });
    const fail = (err: Error) => {
      const index = threads.indexOf(thread);
      if (index !== -1) threads.splice(index, 1);
      for (const jobs of thread.inFlight.values()) for (const job of jobs) job.reject(err);
      thread.inFlight.clear();
      // The queue must not stall behind a dead worker: a replacement takes it.
      if (!closed) pump();
    };
    worker.on('error', (e: unknown) => fail(new Error('encryption worker failed', { cause: e })));
    worker.on('exit', () => fail(new Error('encryption worker exited')));
    worker.unref();
    threads.push(thread);
    return thread;
  }

  /** The least busy thread with room for another batch; a new one while fewer than `size` run. */
  function threadWithRoom(): Thread | undefined {
    let best: Thread | undefined;
    for (const t of threads) if (t.inFlight.size < MAX_BATCHES_PER_WORKER && (best === undefined || t.inFlight.size < best.inFlight.size)) best = t;
    if (best?.inFlight.size === 0) return best;
    if (threads.length < size) return spawn();
    return best;
  }

  function pending(): number {
    return queue.length - head;
  }

  /** Hands queued messages to threads with room; what is left waits here. */
  function pump(): void {
    while (pending() > 0) {
      const thread = threadWithRoom();
      if (thread === undefined) break;
      const batch = queue.slice(head, head + maxBatch);
      head += batch.length;
      const id = nextId++;
      thread.inFlight.set(id, batch);
      thread.worker.ref();
      thread.worker.postMessage({ id, items: batch.map((j) => j.item) });
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
    if (helpInline && pending() > 0) helpScheduled ??= setImmediate(help);
  }

  function flush(): void {
    flushScheduled = undefined;
    pump();
  }

  function help(): void {
    helpScheduled = undefined;
    if (pending() === 0) return;
    encryptInline(queue.pop()!);
    done.inline += 1;
    if (pending() > 0) helpScheduled = setImmediate(help);
  }

  function encrypt(p256dh: string, auth: string, plaintext: string): Promise<Buffer> {
    if (closed) return Promise.reject(new Error('encryptor closed'));
    return new Promise<Buffer>((resolve, reject) => {
      queue.push({ item: [p256dh, auth, plaintext], resolve, reject });
      if (pending() >= maxBatch) pump();
      else flushScheduled ??= setImmediate(flush);
    });
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    if (flushScheduled !== undefined) clearImmediate(flushScheduled);
    if (helpScheduled !== undefined) clearImmediate(helpScheduled);
    for (const job of queue.slice(head)) job.reject(new Error('encryptor closed'));
    queue = [];
    head = 0;
    await Promise.all(threads.splice(0).map((t) => t.worker.terminate()));
  }

  return { encrypt, close, counts: () => ({ ...done }) };
}
