/**
 * pipelinedTx on a real Postgres: statements sent together still run in the
 * order they were sent (COMMIT last, even behind statements postgres.js
 * must describe first), a failing statement rolls the whole transaction
 * back and reports its own error, and a transaction the callback leaves
 * open is rolled back before its connection serves anyone else. And a
 * batch goes out in one socket write even when its statements carry a few
 * KiB each (the driver, as patched, flushes at 16 KiB, not 1 KiB).
 */
import { Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { createSql, type Sql } from '../../src/db/pool.js';
import { pipelinedTx } from '../../src/db/pipelined-tx.js';

let db: TestDb;
/** A pool of one connection: whatever a transaction leaves behind, the next caller gets. */
let one: Sql;

beforeAll(async () => {
  db = await createTestDb();
  await db.sql`CREATE TABLE pipelined_log (n int NOT NULL, note text NOT NULL CHECK (note <> 'bad'))`;
  one = createSql(db.url, { max: 1 });
});

afterAll(async () => {
  await one?.end();
  await db?.drop();
});

beforeEach(async () => {
  await db.sql`TRUNCATE pipelined_log`;
});

const rows = () => db.sql<{ n: number; note: string }[]>`SELECT n, note FROM pipelined_log ORDER BY n`;

describe('pipelinedTx', () => {
  it('runs the statements in the order sent, COMMIT last, though each takes parameters the driver must describe first', async () => {
    // Fresh statement texts with parameters: postgres.js describes each before executing it,
    // and Promise.all calls then() a microtask late; COMMIT must still come after all of them.
    const [first, third, fourth] = await pipelinedTx(one, async (p) => {
      p.begin();
      // A helper that awaits its statement inside an async function sends it microtasks late:
      // still inside the transaction, ahead of COMMIT.
      const viaHelper = async () =>
        (await p.sql<{ xact: string }[]>`INSERT INTO pipelined_log (n, note) VALUES (${4}::int, ${'helper'}::text) RETURNING pg_current_xact_id()::text AS xact`)[0]!;
      const [[a], , [c], d] = await p.commit(
        p.sql<{ xact: string }[]>`INSERT INTO pipelined_log (n, note) VALUES (${1}::int, ${'first'}::text) RETURNING pg_current_xact_id()::text AS xact`,
        p.sql`INSERT INTO pipelined_log (n, note) SELECT count(*)::int + ${1}, ${'second'}::text FROM pipelined_log`,
        p.sql<{ n: number; xact: string }[]>`SELECT count(*)::int AS n, pg_current_xact_id()::text AS xact FROM pipelined_log WHERE note <> ${'none'}`,
        viaHelper(),
      );
      return [a!, c!, d];
    });
    // The third statement saw both inserts before it, in the first one's transaction; so did the helper's.
    expect(third.n).toBe(2);
    expect(third.xact).toBe(first.xact);
    expect(fourth.xact).toBe(first.xact);
    expect(await rows()).toEqual([
      { n: 1, note: 'first' },
      { n: 2, note: 'second' },
      { n: 4, note: 'helper' },
    ]);
  });

  it('a statement sent on its own before BEGIN commits on its own; what follows it is one transaction', async () => {
    await pipelinedTx(one, async (p) => {
      const before = p.send(p.sql`INSERT INTO pipelined_log (n, note) VALUES (${0}::int, ${'alone'}::text)`);
      p.begin();
      const inside = p.send(p.sql`INSERT INTO pipelined_log (n, note) VALUES (${1}::int, ${'inside'}::text)`);
      await Promise.all([before, inside]);
      // Left open: rolled back.
    });
    expect(await rows()).toEqual([{ n: 0, note: 'alone' }]);
  });

  it('a failing statement rolls back the statements before and after it, and its own error is thrown', async () => {
    const err = await pipelinedTx(one, async (p) => {
      p.begin();
      return p.commit(
        p.sql`INSERT INTO pipelined_log (n, note) VALUES (${1}::int, ${'kept?'}::text)`,
        p.sql`INSERT INTO pipelined_log (n, note) VALUES (${2}::int, ${'bad'}::text)`,
        p.sql`INSERT INTO pipelined_log (n, note) VALUES (${3}::int, ${'after'}::text)`,
      );
    }).then(
      () => null,
      (e: unknown) => e as { code?: string },
    );
    expect(err?.code).toBe('23514');
    expect(await rows()).toEqual([]);
    // The connection is usable, outside any transaction: its next write is seen at once.
    await one`INSERT INTO pipelined_log (n, note) VALUES (${4}::int, ${'later'}::text)`;
    expect(await rows()).toEqual([{ n: 4, note: 'later' }]);
  });

  it('a transaction the callback leaves open, or throws out of, is rolled back before the connection is reused', async () => {
    await pipelinedTx(one, async (p) => {
      p.begin();
      await p.send(p.sql`INSERT INTO pipelined_log (n, note) VALUES (${1}::int, ${'returned early'}::text)`);
    });
    const thrown = await pipelinedTx(one, async (p) => {
      p.begin();
      await p.send(p.sql`INSERT INTO pipelined_log (n, note) VALUES (${2}::int, ${'threw'}::text)`);
      throw new Error('callback failed');
    }).catch((e: unknown) => (e as Error).message);
    expect(thrown).toBe('callback failed');
    expect(await rows()).toEqual([]);
    // The one connection is free, and not inside an open transaction.
    await one`INSERT INTO pipelined_log (n, note) VALUES (${9}::int, ${'later'}::text)`;
    expect(await rows()).toEqual([{ n: 9, note: 'later' }]);
  });

  it('sends BEGIN, statements of a few KiB each and COMMIT in one socket write', async () => {
    await one`SELECT 1`; // connected before counting
    const note = 'n'.repeat(3000);
    const insert = (c: Sql, n: number) => c`INSERT INTO pipelined_log (n, note) VALUES (${n}::int, ${note}::text)`;
    await pipelinedTx(one, async (p) => {
      p.begin();
      await p.commit(insert(p.sql, 1), insert(p.sql, 2)); // prepared on this connection: no describe round trip after
    });
    const writes = vi.spyOn(Socket.prototype, 'write');
    try {
      await pipelinedTx(one, async (p) => {
        p.begin();
        await p.commit(insert(p.sql, 3), insert(p.sql, 4), insert(p.sql, 5));
      });
      expect(writes).toHaveBeenCalledTimes(1);
    } finally {
      writes.mockRestore();
    }
    expect((await rows()).map((r) => r.n)).toEqual([1, 2, 3, 4, 5]);
  });
});
