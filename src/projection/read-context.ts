/** What a read strategy (incremental.ts, bulk.ts) works with during one pass. */
import type { Sql, TxSql } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { SyncColumns } from './change-source.js';
import type { ChangeWindow } from './change-stream.js';
import type { BatchReader } from './pass-tally.js';
import type { RecordCache } from './record-cache.js';
import type { WritePipeline } from './write-pipeline.js';

export interface ReadContext {
  /** The pass's transaction (it holds the refresh lock and the cursor). */
  tx: TxSql;
  sql: Sql;
  cols: SyncColumns;
  log: Logger;
  window: ChangeWindow;
  /** Rows per FETCH. */
  batchRows: number;
  batches: BatchReader;
  records: RecordCache;
  /** Another record cache over the same pipeline and tally (a bulk read's second part). */
  newRecords: () => RecordCache;
  pipeline: WritePipeline;
}
