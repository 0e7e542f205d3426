/**
 * The fence around write-backs made outside a pass's transaction
 * (src/projection/write-fence.ts), on a real Postgres.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { fencedWrite, waitForFencedWrites } from '../../src/projection/write-fence.js';
import type { TxSql } from '../../src/db/pool.js';
import { sleep } from '../support/wait.js';
import { pino } from 'pino';
import { createProjection } from '../../src/projection/refresh.js';
import { insertRows, readViews, resetProjection, rowMaker, viewsMatchOracle } from './log-db.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

beforeEach(async () => {
  await db.sql`DROP TABLE IF EXISTS fenced`;
  await db.sql`CREATE TABLE fenced (v int)`;
});

const insert = (v: number) => async (tx: TxSql) => {
  await tx`INSERT INTO fenced VALUES (${v})`;
  return v;
};

async function values(): Promise<number[]> {
  return (await db.sql<{ v: number }[]>`SELECT v FROM fenced ORDER BY v`).map((r) => r.v);
}

let passes = 0;
/** A pass's lock: each pass-like transaction holds its own, as each real pass holds the refresh lock alone. */
const passLock = () => `fence-test-pass-${++passes}`;

/** Runs `body` inside a pass-like transaction and returns what it returned. */
async function inPass<T>(body: (xid: string, tx: TxSql) => Promise<T>, end: 'commit' | 'rollback' = 'commit'): Promise<T> {
  let out: T | undefined;
  await db.sql
    .begin(async (tx) => {
      out = await body((await waitForFencedWrites(tx, passLock()))!, tx);
      if (end === 'rollback') throw Object.assign(new Error('roll back'), { rollBack: true });
    })
    .catch((e: unknown) => {
      if (!(e as { rollBack?: boolean }).rollBack) throw e;
    });
  return out as T;
}

describe('fenced write-backs', () => {
  it('commit on their own while their pass is in progress, and name their transaction', async () => {
    const { result, xid } = await inPass((passXid) => fencedWrite(db.sql, passXid, insert(1)), 'rollback');
    // Committed although the pass rolled back: a later pass applies the same rows again.
    expect(result).toBe(1);
    expect(xid).toMatch(/^\d+$/);
    expect(await values()).toEqual([1]);
  });

  it('are refused, writing nothing, once their pass has committed or rolled back', async () => {
    for (const end of ['commit', 'rollback'] as const) {
      const passXid = await inPass(async (xid) => xid, end);
      await expect(fencedWrite(db.sql, passXid, insert(2))).rejects.toThrow(
        new RegExp(`fenced off: its refresh pass \\(transaction ${passXid}\\) is ${end === 'commit' ? 'committed' : 'aborted'}, expected in progress`),
      );
    }
    expect(await values()).toEqual([]);
  });

  it('hold off the next pass until they have landed', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const writing = new Promise<void>((r) => (started = r));
    // A write of a pass that is still open, which takes its time.
    const slow = inPass((passXid) =>
      fencedWrite(db.sql, passXid, async (tx) => {
        started();
        await gate;
        return insert(3)(tx);
      }),
    );
    await writing;
    let waited = false;
    const next = db.sql.begin(async (tx) => {
      await waitForFencedWrites(tx, passLock());
      waited = true;
      // The next pass loads only now, and sees the write.
      return (await tx<{ v: number }[]>`SELECT v FROM fenced`).map((r) => r.v);
    });
    await sleep(300);
    expect(waited).toBe(false);
    release();
    expect(await next).toEqual([3]);
    await slow;
  });
});

describe('a pass that fails after its write-backs landed', () => {
  it('leaves snapshots ahead of the cursor, and the next pass applies the same rows again to the same result', async () => {
    await resetProjection(db.sql);
    // Fails the cursor's write, the pass's last step, while fail_cursor has a row.
    await db.sql`CREATE TABLE IF NOT EXISTS fail_cursor (x int)`;
    await db.sql`CREATE OR REPLACE FUNCTION fail_cursor_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF EXISTS (SELECT 1 FROM fail_cursor) THEN RAISE EXCEPTION 'injected cursor failure'; END IF; RETURN NEW; END $$`;
    await db.sql`CREATE OR REPLACE TRIGGER fail_cursor_write BEFORE INSERT OR UPDATE ON mana_ai.projection_cursor
      FOR EACH ROW EXECUTE FUNCTION fail_cursor_write()`;
    try {
      const row = rowMaker((n) => ({ recordId: `m${n % 4}`, op: 'insert', data: { title: `t${n}`, state: 'active' } }));
      await insertRows(db.sql, Array.from({ length: 8 }, () => row()));
      const projection = createProjection({ sql: db.sql, log: pino({ level: 'silent' }), batchRows: 3, cacheRecords: 8, loadChunk: 1 });
      expect((await projection.refresh()).rowsApplied).toBe(8);

      // Newer than the horizon, so the next passes are incremental (fenced write-backs).
      const soon = new Date(Date.now() + 60_000).toISOString().replace('Z', '000Z');
      const newer = Array.from({ length: 10 }, (_, i) => row({ data: { title: `new${i}` }, createdAt: soon }));
      await insertRows(db.sql, newer);
      await db.sql`INSERT INTO fail_cursor VALUES (1)`;
      await expect(projection.refresh()).rejects.toThrow(/injected cursor failure/);
      const ahead = await readViews(db.sql);
      expect([...ahead.values()].some((v) => String(v.record['title']).startsWith('new')), 'the write-backs landed before the pass failed').toBe(true);

      await db.sql`DELETE FROM fail_cursor`;
      const again = await projection.refresh();
      expect(again.rowsApplied).toBe(newer.length);
      const { actual, expected } = await viewsMatchOracle(db.sql);
      expect(actual).toEqual(expected);
    } finally {
      await db.sql`DROP TRIGGER IF EXISTS fail_cursor_write ON mana_ai.projection_cursor`;
    }
  });
});
