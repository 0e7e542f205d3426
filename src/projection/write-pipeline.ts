/**
 * A pass's snapshot writes, sent without waiting for each: up to
 * WRITES_AHEAD in flight while the pass merges the next records.
 *
 * An incremental pass on a pool of two or more sends them on other
 * connections, several at once, each committing on its own, fenced to the
 * pass (write-fence.ts), so every load sees every write. A bulk pass's
 * reader holds the second connection, and a pool of two would leave a side
 * query waiting behind it: there everything goes through the pass's own
 * transaction, in order.
 */
import type { Sql, TxSql } from '../db/pool.js';
import type { RecordState } from './lww.js';
import { saveStates } from './snapshot-store.js';
import { viewKey } from './views.js';
import { fencedWrite } from './write-fence.js';

/** Write-backs sent and not yet answered, at most (each up to FLUSH_CHUNK records of JSON). */
const WRITES_AHEAD = 4;

/** The pool's connection limit (postgres.js keeps it in its options). */
export function poolSize(sql: Sql): number {
  const max = (sql as unknown as { options?: { max?: unknown } }).options?.max;
  return typeof max === 'number' ? max : 1;
}

export interface WritePipelineDeps {
  tx: TxSql;
  sql: Sql;
  /** The pass's transaction id when writes go to other connections, fenced to it; undefined: through `tx`. */
  fence: string | undefined;
  /** Each fenced write's transaction id (the pass counts them as its own). */
  onWriteXid: (xid: string) => void;
  /** Records written, as they are sent. */
  onWritten: (records: number) => void;
  /** Serialized bytes per record written whole, measured when the pipeline drains. */
  onRecordBytes: (bytes: number) => void;
}

export interface WritePipeline {
  /** Where loads go: the connections that see every write already committed. */
  readonly loadDb: Sql | TxSql;
  /**
   * Sends a write of these records without waiting for it, unless
   * WRITES_AHEAD are already unanswered, and returns it (wrapped: an async
   * function would wait for it). A record is in at most one write at a
   * time: two on different connections could land in either order.
   */
  send<T>(keys: string[], write: (db: TxSql) => Promise<T>): Promise<{ sent: Promise<T> }>;
  /** Writes states back (see send). */
  writeBack(states: RecordState[]): Promise<void>;
  /** Waits for every write sent; the first that failed fails the pass. */
  drain(): Promise<void>;
}

export function createWritePipeline(deps: WritePipelineDeps): WritePipeline {
  const { tx, sql, fence } = deps;
  const inFlight: { write: Promise<unknown>; keys: string[] }[] = [];
  const pendingKeys = new Set<string>();
  let wholeBytes = 0;
  let wholeRecords = 0;

  async function settleOldest(): Promise<void> {
    const { write, keys } = inFlight.shift()!;
    try {
      await write;
    } finally {
      for (const k of keys) pendingKeys.delete(k);
    }
  }

  async function drain(): Promise<void> {
    while (inFlight.length > 0) await settleOldest();
    if (wholeRecords > 0) deps.onRecordBytes(Math.max(256, Math.round(wholeBytes / wholeRecords)));
    wholeBytes = 0;
    wholeRecords = 0;
  }

  async function send<T>(keys: string[], write: (db: TxSql) => Promise<T>): Promise<{ sent: Promise<T> }> {
    if (keys.some((k) => pendingKeys.has(k))) await drain();
    const sent =
      fence === undefined
        ? write(tx)
        : fencedWrite(sql, fence, write).then(({ result, xid }) => {
            if (xid) deps.onWriteXid(xid);
            return result;
          });
    sent.catch(() => undefined); // awaited in settleOldest; never an unhandled rejection
    for (const k of keys) pendingKeys.add(k);
    inFlight.push({ write: sent, keys });
    while (inFlight.length > WRITES_AHEAD) await settleOldest();
    return { sent };
  }

  async function writeBack(states: RecordState[]): Promise<void> {
    if (states.length === 0) return;
    deps.onWritten(states.length);
    const { sent } = await send(states.map((st) => viewKey(st.tableName, st.userId, st.recordId)), (db) => saveStates(db, states));
    sent.then((w) => {
      wholeBytes += w.bytes;
      wholeRecords += w.records;
    }, () => undefined);
  }

  return { loadDb: fence === undefined ? tx : sql, send, writeBack, drain };
}
