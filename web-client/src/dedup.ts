/**
 * Dedup of due occurrences by `iterationId`, in IndexedDB so every tab and
 * the service worker of the origin share it (db `mana-ai-client`, store
 * `iterations`, key = iterationId, value = `{ state, at }`).
 *
 * Each mark is one read-write IndexedDB transaction (read, decide, put);
 * read-write transactions on one store never overlap, across tabs and
 * workers too, so "first one wins" holds without any other coordination.
 * Entries older than `maxAgeMs` count as absent and are purged now and then.
 */

export type DedupState = 'seen' | 'claimed' | 'planned' | 'staged' | 'elsewhere';

export interface DedupEntry {
  state: DedupState;
  /** Epoch ms of the last mark. */
  at: number;
}

export const DEDUP_STATES: readonly DedupState[] = ['seen', 'claimed', 'planned', 'staged', 'elsewhere'];
export const DEDUP_DB_NAME = 'mana-ai-client';
export const DEDUP_STORE_NAME = 'iterations';
/** Default age after which an entry is forgotten: 7 days. */
export const DEFAULT_DEDUP_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
/** How often (at most) a store purges expired entries on its own. */
const PURGE_EVERY_MS = 60 * 60 * 1000;

export interface DedupStore {
  /** The live (unexpired) entry, if any. */
  get(iterationId: string): Promise<DedupEntry | undefined>;
  /** Marks `state` only when no live entry exists; true when this call marked it. */
  markIfNew(iterationId: string, state: DedupState): Promise<boolean>;
  /** Marks `state` unless a live entry is in one of `blockers`; true when this call marked it. */
  markUnless(iterationId: string, state: DedupState, blockers: readonly DedupState[]): Promise<boolean>;
  /** Sets the state unconditionally. */
  set(iterationId: string, state: DedupState): Promise<void>;
  /** Removes the entry (so a later nudge may try again). */
  forget(iterationId: string): Promise<void>;
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
export function mayMark(stored: unknown, now: number, maxAgeMs: number, blockers: readonly DedupState[]): boolean {
  const entry = liveEntry(stored, now, maxAgeMs);
  return entry === undefined || !blockers.includes(entry.state);
}

function requestDone<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function transactionDone(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

/**
 * Opens (lazily) the shared IndexedDB dedup store. Works in windows and
 * service workers alike.
 */
export function openDedupStore(options: DedupOptions = {}): DedupStore {
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_DEDUP_MAX_AGE_MS;
  const now = options.now ?? (() => Date.now());
  const dbName = options.dbName ?? DEDUP_DB_NAME;
  let dbPromise: Promise<IDBDatabase> | null = null;
  let lastPurge = 0;

  function open(): Promise<IDBDatabase> {
    if (dbPromise) return dbPromise;
    const factory = options.indexedDB ?? globalThis.indexedDB;
    if (!factory) return Promise.reject(new Error('IndexedDB is not available'));
    const attempt = new Promise<IDBDatabase>((resolve, reject) => {
      const req = factory.open(dbName, 1);
      req.onupgradeneeded = () => {
        const store = req.result.createObjectStore(DEDUP_STORE_NAME);
        store.createIndex('at', 'at');
      };
      req.onsuccess = () => {
        const db = req.result;
        // Let a newer version of this code upgrade the schema from another tab.
        db.onversionchange = () => {
          db.close();
          dbPromise = null;
        };
        // The browser may close a connection (storage pressure); reopen on next use.
        db.onclose = () => {
          dbPromise = null;
        };
        resolve(db);
      };
      req.onerror = () => reject(req.error ?? new Error('cannot open IndexedDB'));
      req.onblocked = () => reject(new Error(`IndexedDB ${dbName} upgrade blocked by another tab`));
    });
    dbPromise = attempt;
    attempt.catch(() => {
      if (dbPromise === attempt) dbPromise = null;
    });
    return attempt;
  }

  function purgeSoon(): void {
    const t = now();
    if (t - lastPurge < PURGE_EVERY_MS) return;
    lastPurge = t;
    purge().catch(() => {
      // Opportunistic: the next mark tries again an hour later.
    });
  }

  async function get(iterationId: string): Promise<DedupEntry | undefined> {
    const db = await open();
    const tx = db.transaction(DEDUP_STORE_NAME, 'readonly');
    const stored: unknown = await requestDone(tx.objectStore(DEDUP_STORE_NAME).get(iterationId));
    return liveEntry(stored, now(), maxAgeMs);
  }

  async function markUnless(iterationId: string, state: DedupState, blockers: readonly DedupState[]): Promise<boolean> {
    const db = await open();
    const tx = db.transaction(DEDUP_STORE_NAME, 'readwrite');
    const store = tx.objectStore(DEDUP_STORE_NAME);
    const done = transactionDone(tx);
    let marked = false;
    // Read and write in the same transaction: no other tab or worker can
    // interleave between the decision and the put.
    const req = store.get(iterationId);
    req.onsuccess = () => {
      const t = now();
      if (mayMark(req.result, t, maxAgeMs, blockers)) {
        store.put({ state, at: t } satisfies DedupEntry, iterationId);
        marked = true;
      }
    };
    await done;
    purgeSoon();
    return marked;
  }

  function markIfNew(iterationId: string, state: DedupState): Promise<boolean> {
    return markUnless(iterationId, state, DEDUP_STATES);
  }

  async function set(iterationId: string, state: DedupState): Promise<void> {
    const db = await open();
    const tx = db.transaction(DEDUP_STORE_NAME, 'readwrite');
    tx.objectStore(DEDUP_STORE_NAME).put({ state, at: now() } satisfies DedupEntry, iterationId);
    await transactionDone(tx);
  }

  async function forget(iterationId: string): Promise<void> {
    const db = await open();
    const tx = db.transaction(DEDUP_STORE_NAME, 'readwrite');
    tx.objectStore(DEDUP_STORE_NAME).delete(iterationId);
    await transactionDone(tx);
  }

  async function purge(): Promise<number> {
    const db = await open();
    const tx = db.transaction(DEDUP_STORE_NAME, 'readwrite');
    const done = transactionDone(tx);
    let deleted = 0;
    const cutoff = now() - maxAgeMs;
    const cursorReq = tx.objectStore(DEDUP_STORE_NAME).index('at').openCursor(IDBKeyRange.upperBound(cutoff, true));
    cursorReq.onsuccess = () => {
      const cursor = cursorReq.result;
      if (!cursor) return;
      cursor.delete();
      deleted++;
      cursor.continue();
    };
    await done;
    return deleted;
  }

  function close(): void {
    const pending = dbPromise;
    dbPromise = null;
    pending?.then((db) => db.close()).catch(() => undefined);
  }

  return { get, markIfNew, markUnless, set, forget, purge, close };
}

/**
 * The same contract in memory, for tests and for contexts without IndexedDB
 * (then dedup is per page only).
 */
export function createMemoryDedupStore(options: Pick<DedupOptions, 'maxAgeMs' | 'now'> = {}): DedupStore {
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_DEDUP_MAX_AGE_MS;
  const now = options.now ?? (() => Date.now());
  const entries = new Map<string, DedupEntry>();

  async function markUnless(iterationId: string, state: DedupState, blockers: readonly DedupState[]): Promise<boolean> {
    const t = now();
    if (!mayMark(entries.get(iterationId), t, maxAgeMs, blockers)) return false;
    entries.set(iterationId, { state, at: t });
    return true;
  }

  return {
    get: async (iterationId) => liveEntry(entries.get(iterationId), now(), maxAgeMs),
    markIfNew: (iterationId, state) => markUnless(iterationId, state, DEDUP_STATES),
    markUnless,
    set: async (iterationId, state) => {
      entries.set(iterationId, { state, at: now() });
    },
    forget: async (iterationId) => {
      entries.delete(iterationId);
    },
    purge: async () => {
      let deleted = 0;
      for (const [id, entry] of entries) {
        if (liveEntry(entry, now(), maxAgeMs) === undefined) {
          entries.delete(id);
          deleted++;
        }
      }
      return deleted;
    },
    close: () => undefined,
  };
}
