/**
 * A mission shared in a space, through the real refresh and due scan: one
 * mission whatever member wrote its rows, due once, for its author; other
 * members' edits reach the author's view, a stranger's rows with the same
 * record id do not; a member whose first edit arrives after others' rows
 * gets them by a rebuild; currentRecord (what the write-back re-reads) is
 * the author's view, and its space is what the write-back stamps; an
 * incremental pass takes the stored stamps from its read of the window.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import postgres from 'postgres';
import type { Sql } from '../../src/db/pool.js';
import { createTestDb, type TestDb } from '../support/db.js';
import { createProjection } from '../../src/projection/refresh.js';
import { currentRecord, detectSyncColumns } from '../../src/projection/change-source.js';
import { scanDue } from '../../src/schedule/due.js';
import { insertRows, readRecord, resetProjection, rowMaker, testClock, viewsMatchOracle } from './log-db.js';

let db: TestDb;

beforeAll(async () => {
  db = await createTestDb();
});

afterAll(async () => {
  await db?.drop();
});

const { at, c } = testClock();
const SPACE = 'space-team';
const row = rowMaker(() => ({ recordId: 'shared', spaceId: SPACE }));
const mission = { title: 'team review', state: 'active', nextRunAt: at(-30), createdAt: at(0), updatedAt: at(0), authorId: 'ann', spaceId: SPACE };

describe('a mission shared in a space', () => {
  it('is one mission whatever member writes it, due once, for its author', async () => {
    await resetProjection(db.sql);
    const projection = createProjection({ sql: db.sql, log: pino({ level: 'silent' }), batchRows: 2, cacheRecords: 10 });
    await insertRows(db.sql, [
      row({ userId: 'ann', op: 'insert', createdAt: c(0), data: mission }),
      // Ben, a member, edits it: his row carries the space the mission lives in.
      row({ userId: 'ben', op: 'update', createdAt: c(1), data: { title: 'edited by ben' }, fieldMeta: { title: at(1) } }),
      // A stranger knows the id: without the space, nothing of his reaches anyone else's view.
      row({ userId: 'eve', op: 'update', createdAt: c(2), data: { state: 'paused' }, fieldMeta: { state: at(2) }, spaceId: '_personal:eve' }),
      row({ userId: 'eve', op: 'update', createdAt: c(2), data: { title: 'eve was here' }, fieldMeta: { title: at(3) }, spaceId: null }),
    ]);
    await projection.refresh();

    expect(await readRecord(db.sql, 'ann', 'shared')).toMatchObject({ title: 'edited by ben', state: 'active' });
    // Ben's view holds Ann's rows too (he stamped the space), but the mission is Ann's.
    expect(await readRecord(db.sql, 'ben', 'shared')).toMatchObject({ title: 'edited by ben', state: 'active', authorId: 'ann' });
    expect(await readRecord(db.sql, 'eve', 'shared')).toEqual({ id: 'shared', state: 'paused', title: 'eve was here' });
    const { due } = await scanDue(db.sql, { limit: 10, at: at(60) });
    expect(due.map((d) => `${d.userId}/${d.missionId}`)).toEqual(['ann/shared']);
    const [snap] = await db.sql<{ spaceId: string; author: string }[]>`
      SELECT space_id AS "spaceId", author FROM mana_ai.mission_snapshots WHERE user_id = 'ann' AND mission_id = 'shared'`;
    expect(snap).toEqual({ spaceId: SPACE, author: 'ann' });

    // The write-back re-reads the author's view, the members' rows included.
    const cols = await detectSyncColumns(db.sql);
    expect(await currentRecord(db.sql, cols, 'ann', 'shared')).toMatchObject({ title: 'edited by ben', spaceId: SPACE });

    // A member whose first row comes after the others' gains their rows by a rebuild.
    await insertRows(db.sql, [row({ userId: 'cid', op: 'update', createdAt: c(4), data: { objective: 'from cid' }, fieldMeta: { objective: at(4) } })]);
    const stats = await projection.refresh();
    expect(stats.rebuilds).toBe(1);
    expect(await readRecord(db.sql, 'cid', 'shared')).toMatchObject({ title: 'edited by ben', objective: 'from cid', authorId: 'ann' });
    expect(await readRecord(db.sql, 'ann', 'shared')).toMatchObject({ objective: 'from cid' });
    expect(stats.changed).toEqual(expect.arrayContaining([{ userId: 'ann', missionId: 'shared' }, { userId: 'ben', missionId: 'shared' }, { userId: 'cid', missionId: 'shared' }]));

    const { actual, expected } = await viewsMatchOracle(db.sql);
    expect(actual).toEqual(expected);
  });

  it('an incremental pass routes space rows with the stamps its read carried, no lookup of its own', async () => {
    // Every statement the pass sends, as text: a stamp lookup would be a SELECT on record_spaces of its own.
    const sent: string[] = [];
    const watched = postgres(db.url, { max: 4, onnotice: () => {}, debug: (_c: number, q: string) => sent.push(q) });
    try {
      const projection = createProjection({ sql: watched as unknown as Sql, log: pino({ level: 'silent' }), batchRows: 50, cacheRecords: 10 });
      await projection.refresh();
      await insertRows(db.sql, [row({ userId: 'ben', op: 'update', createdAt: c(5), data: { title: 'ben again' }, fieldMeta: { title: at(5) } })]);
      sent.length = 0;
      await projection.refresh();
      const lookups = sent.filter((q) => /record_spaces/.test(q) && !/^\s*(DECLARE|INSERT)/.test(q));
      expect(lookups).toEqual([]);
      // Ben's row still reaches every member's view of the space.
      for (const user of ['ann', 'ben', 'cid']) expect(await readRecord(db.sql, user, 'shared')).toMatchObject({ title: 'ben again' });
    } finally {
      await watched.end();
    }
  });
});
