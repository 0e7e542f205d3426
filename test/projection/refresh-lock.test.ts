/**
 * One refresher per database: a pass that finds the refresh lock taken
 * steps aside at once. Its opening statements go out together with the
 * lock, so none of them may wait for the pass that holds it: not for the
 * cursor's row, which that pass has locked, nor for that pass's
 * write-backs in flight.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import postgres from 'postgres';
import { pino } from 'pino';
import { createTestDb, type TestDb } from '../support/db.js';
import { createProjection } from '../../src/projection/refresh.js';
import { insertRows, readCursor, rowMaker } from './log-db.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

describe('a refresh while another pass holds the refresh lock', () => {
  it('steps aside at once, without waiting for that pass\'s cursor row or write-backs, and changes nothing', async () => {
    const row = rowMaker((n) => ({ recordId: `m${n}`, op: 'insert', data: { title: `t${n}`, state: 'active' } }));
    await insertRows(db.sql, [row()]);
    const projection = createProjection({ sql: db.sql, log: pino({ level: 'silent' }), batchRows: 100, cacheRecords: 100 });
    expect((await projection.refresh()).rowsApplied).toBe(1);
    const before = await readCursor(db.sql);

    // Another instance's pass: it holds the refresh lock and the cursor's row, and one of its
    // write-backs holds the write fence's lock shared (write-fence.ts), all until released.
    const other = postgres(db.url, { max: 2, onnotice: () => {} });
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let holding!: () => void;
    const held = new Promise<void>((r) => (holding = r));
    const pass = other.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtext('mana_ai:projection'))`;
      await tx`SELECT 1 FROM mana_ai.projection_cursor WHERE name = 'ai' FOR UPDATE`;
      await tx`SELECT pg_advisory_xact_lock_shared(hashtext('mana_ai:projection:writes'))`;
      holding();
      await released;
    });
    // Should the refresh wait for a lock after all, it ends when this does, and fails the timing below.
    const failsafe = setTimeout(() => release(), 5000);
    try {
      await held;
      // Above any horizon the first pass can have reached, so a later pass reads it.
      await insertRows(db.sql, [row({ createdAt: new Date(Date.now() + 60_000).toISOString().replace('Z', '000Z') })]);
      const started = performance.now();
      const stats = await projection.refresh();
      expect(stats).toMatchObject({ ran: false, rowsApplied: 0 });
      // Waiting for either lock would last until the release below.
      expect(performance.now() - started).toBeLessThan(2000);
      expect(await readCursor(db.sql)).toEqual(before);
    } finally {
      clearTimeout(failsafe);
      release();
      await pass;
      await other.end({ timeout: 5 });
    }
    // Once the lock is free, the next pass reads the row as usual.
    expect((await projection.refresh()).rowsApplied).toBe(1);
  });
});
