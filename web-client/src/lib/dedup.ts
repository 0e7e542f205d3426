/**
 * What this browser knows about occurrences and staged iterations, in
 * IndexedDB so every tab and the service worker of the origin share it (db
 * `mana-ai-client`, store `iterations`, value `{ state, at, attempt?, user? }`).
 * Keys: an iteration id holds the nudge mark (`claimed`, `planned`,
 * `elsewhere` with the offer it answered); `stage:<iterationId>` holds the
 * staging record of a server iteration, apart, so no nudge mark overwrites it.
 *
 * Each conditional mark is one read-write IndexedDB transaction (read,
 * decide, put); read-write transactions on one store never overlap, across
 * tabs and workers too. Entries older than `maxAgeMs` count as absent and are
 * purged now and then.
 */

import { lazyDatabase } from './idb.js';

/** `seen` is only read (older versions wrote it before claiming); it blocks nothing. */
export type DedupState = 'seen' | 'claimed' | 'planned' | 'elsewhere' | 'staging' | 'staged';

export interface DedupEntry {
  state: DedupState;
  /** Epoch ms of the last mark. */
  at: number;
  /** The offer (a nudge's `attempt`) the mark answered. */
  attempt?: number;
  /** The user whose occurrence it is (sign-out forgets that user's entries). */
  user?: string;
}

/** What a caller writes; `at` is the store's clock. */
export type DedupMark = Omit<DedupEntry, 'at'>;

export const DEDUP_STATES: readonly DedupState[] = ['seen', 'claimed', 'planned', 'elsewhere', 'staging', 'staged'];
export const DEDUP_DB_NAME = 'mana-ai-client';
export const DEDUP_STORE_NAME = 'iterations';
/** Default age after which an entry is forgotten: 7 days. */
export const DEFAULT_DEDUP_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
/** How often (at most) a store purges expired entries on its own. */
const PURGE_EVERY_MS = 60 * 60 * 1000;

export interface DedupStore {
  /** The live (unexpired) entry, if any. */
  get(key: string): Promise<DedupEntry | undefined>;
  /** Writes `mark` unless `blocks` says no of the live entry; true when this call wrote it. */
  markUnless(key: string, mark: DedupMark, blocks: (live: DedupEntry) => boolean): Promise<boolean>;
  /** Writes unconditionally. */
  set(key: string, mark: DedupMark): Promise<void>;
  /** Removes the entry. */
  forget(key: string): Promise<void>;
  /** Deletes the entries of `user`, and those that name no user; resolves to how many. */
  clear(user: string | undefined): Promise<number>;
  /** Deletes expired entries; resolves to how many. */
  purge(): Promise<number>;
  close(): void;
}

export interface DedupOptions {
  /** Entries older than this count as absent (default 7 days). */
  maxAgeMs?: number;
  now?: () => number;
  indexedDB?: IDBFactory;
  dbName?: string;
}

function isEntry(value: unknown): value is DedupEntry {
  if (typeof value !== 'object' || value === null) return false;
  const { state, at } = value as { state?: unknown; at?: unknown };
  return typeof at === 'number' && DEDUP_STATES.includes(state as DedupState);
}

/** The live entry in a stored value: garbage and expired entries are absent. */
export function liveEntry(stored: unknown, now: number, maxAgeMs: number): DedupEntry | undefined {
  if (!isEntry(stored)) return undefined;
  return now - stored.at > maxAgeMs ? undefined : stored;
}

/** Whether a mark may be written over `stored` (pure; the decision inside the transaction). */
export function mayMark(stored: unknown, now: number, maxAgeMs: number, blocks: (live: DedupEntry) => boolean): boolean {
  const entry = liveEntry(stored, now, maxAgeMs);
  return entry === undefined || !blocks(entry);
}

/** Whether sign-out as `user` forgets this stored value: that user's, or no one's (pure). */
export const clearedFor = (stored: unknown, user: string | undefined): boolean => {
  const owner = (stored as { user?: unknown } | null)?.user;
  return typeof owner !== 'string' || owner === user;
};

const entryOf = (mark: DedupMark, at: number): DedupEntry => ({ ...mark, at });

/**
 * Opens (lazily) the shared IndexedDB dedup store. Works in windows and
 * service workers alike.
 */
export function openDedupStore(options: DedupOptions = {}): DedupStore {
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_DEDUP_MAX_AGE_MS;
  const now = options.now ?? (() => Date.now());
  const db = lazyDatabase(options.dbName ?? DEDUP_DB_NAME, (d) => d.createObjectStore(DEDUP_STORE_NAME).createIndex('at', 'at'), options.indexedDB);
  let lastPurge = 0;

  function purgeSoon(): void {
    const t = now();
    if (t - lastPurge < PURGE_EVERY_MS) return;
    lastPurge = t;
    purge().catch(() => {
      // Opportunistic: the next mark tries again an hour later.
    });
  }

  /** One transaction; `fn` runs in it with the store and returns what to read once it completed. */
  async function inTransaction<T>(fn: (store: IDBObjectStore) => () => T, mode: IDBTransactionMode = 'readwrite'): Promise<T> {
    const tx = (await db.open()).transaction(DEDUP_STORE_NAME, mode);
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
    // Handled here too, in case fn throws before the await below.
    done.catch(() => undefined);
    const result = fn(tx.objectStore(DEDUP_STORE_NAME));
    await done;
    return result();
  }

  async function markUnless(key: string, mark: DedupMark, blocks: (live: DedupEntry) => boolean): Promise<boolean> {
    // Read and write in the same transaction: no other tab or worker can
    // interleave between the decision and the put.
    const marked = await inTransaction((store) => {
      let ok = false;
      const req = store.get(key);
      req.onsuccess = () => {
        const t = now();
        if (mayMark(req.result, t, maxAgeMs, blocks)) {
          store.put(entryOf(mark, t), key);
          ok = true;
        }
      };
      return () => ok;
    });
    purgeSoon();
    return marked;
  }

  /** Deletes, in one cursor pass over `source`, every value `doomed` picks. */
  function sweep(doomed: (value: unknown) => boolean, index?: string, range?: IDBKeyRange): Promise<number> {
    return inTransaction((store) => {
      let deleted = 0;
      const req = (index ? store.index(index) : store).openCursor(range);
      req.onsuccess = () => {
        const cursor = req.result;
        if (!cursor) return;
        if (doomed(cursor.value)) {
          cursor.delete();
          deleted++;
        }
        cursor.continue();
      };
      return () => deleted;
    });
  }

  const get = (key: string) =>
    inTransaction((store) => {
      const req = store.get(key);
      return () => liveEntry(req.result, now(), maxAgeMs);
    }, 'readonly');
  const set = (key: string, mark: DedupMark) => inTransaction((store) => (store.put(entryOf(mark, now()), key), () => undefined));
  const forget = (key: string) => inTransaction((store) => (store.delete(key), () => undefined));
  const clear = (user: string | undefined) => sweep((v) => clearedFor(v, user));
  const purge = () => sweep(() => true, 'at', IDBKeyRange.upperBound(now() - maxAgeMs, true));

  return { get, markUnless, set, forget, clear, purge, close: db.close };
}

/**
 * The same contract in memory: for tests, for contexts without IndexedDB,
 * and where IndexedDB fails (then it holds for this context only).
 */
export function createMemoryDedupStore(options: Pick<DedupOptions, 'maxAgeMs' | 'now'> = {}): DedupStore {
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_DEDUP_MAX_AGE_MS;
  const now = options.now ?? (() => Date.now());
  const entries = new Map<string, DedupEntry>();

  const sweep = async (doomed: (entry: DedupEntry) => boolean) => {
    let deleted = 0;
    for (const [key, entry] of entries) if (doomed(entry) && entries.delete(key)) deleted++;
    return deleted;
  };

  return {
    get: async (key) => liveEntry(entries.get(key), now(), maxAgeMs),
    async markUnless(key, mark, blocks) {
      const t = now();
      if (!mayMark(entries.get(key), t, maxAgeMs, blocks)) return false;
      entries.set(key, entryOf(mark, t));
      return true;
    },
    set: async (key, mark) => void entries.set(key, entryOf(mark, now())),
    forget: async (key) => void entries.delete(key),
    clear: (user) => sweep((e) => clearedFor(e, user)),
    purge: () => sweep((e) => liveEntry(e, now(), maxAgeMs) === undefined),
    close: () => undefined,
  };
}

/**
 * A context's store: the one given, else IndexedDB (memory where a context
 * has none), falling back to memory when it fails (see withMemoryFallback).
 */
export function contextDedupStore(given: DedupStore | undefined, onFallback: (error: unknown) => void, options: Pick<DedupOptions, 'maxAgeMs'>): DedupStore {
  const primary = given ?? (typeof indexedDB === 'undefined' ? createMemoryDedupStore(options) : openDedupStore(options));
  return withMemoryFallback(primary, onFallback, options);
}

/**
 * `primary` until it fails once, then an in-memory store for the rest of this
 * context's life (quota, private mode, a connection Safari lost, a database
 * that will not open): a failing store must neither drop nudges nor stop
 * staging. `onFallback` hears the first failure.
 */
export function withMemoryFallback(primary: DedupStore, onFallback: (error: unknown) => void, options: Pick<DedupOptions, 'maxAgeMs' | 'now'> = {}): DedupStore {
  let memory: DedupStore | undefined;
  async function via<T>(use: (store: DedupStore) => Promise<T>): Promise<T> {
    if (!memory) {
      try {
        return await use(primary);
      } catch (e: unknown) {
        memory = createMemoryDedupStore(options);
        primary.close();
        onFallback(e);
      }
    }
    return use(memory);
  }
  return {
    get: (key) => via((s) => s.get(key)),
    markUnless: (key, mark, blocks) => via((s) => s.markUnless(key, mark, blocks)),
    set: (key, mark) => via((s) => s.set(key, mark)),
    forget: (key) => via((s) => s.forget(key)),
    clear: (user) => via((s) => s.clear(user)),
    purge: () => via((s) => s.purge()),
    close: () => (memory ?? primary).close(),
  };
}
