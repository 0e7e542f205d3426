/**
 * One IndexedDB connection, opened on first use and shared by the calls of
 * one context; opened again after the browser closed it, another tab
 * upgraded the schema, or opening failed.
 */

export interface LazyDatabase {
  open(): Promise<IDBDatabase>;
  close(): void;
}

/** Database `name` at version 1; `upgrade` creates its stores. */
export function lazyDatabase(name: string, upgrade: (db: IDBDatabase) => void, factory?: IDBFactory): LazyDatabase {
  let current: Promise<IDBDatabase> | null = null;

  function open(): Promise<IDBDatabase> {
    if (current) return current;
    const idb = factory ?? globalThis.indexedDB;
    if (!idb) return Promise.reject(new Error('IndexedDB is not available'));
    const attempt = new Promise<IDBDatabase>((resolve, reject) => {
      const req = idb.open(name, 1);
      req.onupgradeneeded = () => upgrade(req.result);
      req.onsuccess = () => {
        const db = req.result;
        // Let a newer version of this code upgrade the schema from another tab.
        db.onversionchange = () => {
          db.close();
          forget();
        };
        // The browser may close a connection (storage pressure); reopen on next use.
        db.onclose = forget;
        resolve(db);
      };
      req.onerror = () => reject(req.error ?? new Error(`cannot open IndexedDB ${name}`));
      req.onblocked = () => reject(new Error(`IndexedDB ${name} upgrade blocked by another tab`));
    });
    const forget = () => {
      if (current === attempt) current = null;
    };
    current = attempt;
    attempt.catch(forget);
    return attempt;
  }

  function close(): void {
    const pending = current;
    current = null;
    pending?.then((db) => db.close()).catch(() => undefined);
  }

  return { open, close };
}
