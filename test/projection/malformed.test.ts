/**
 * Malformed sync_changes rows through a real coordinator: skipped, counted
 * in the pass stats and in mana_ai_projection_rows_skipped_total, logged
 * once each, never fatal, and the good rows of the same batch applied.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { captureLog } from '../support/log-capture.js';
import { loadConfig } from '../../src/config.js';
import { startCoordinator, type Coordinator } from '../../src/coordinator.js';
import type { LogRow } from './oracle.js';
import { insertRows, readRecord, rowMaker } from './log-db.js';

let db: TestDb;
let coordinator: Coordinator;
const { log, lines } = captureLog('info');
const KEY = 'malformed-test-key';

beforeAll(async () => {
  db = await createTestDb({ acceptRowsManaSyncRefuses: true });
  const config = loadConfig({ NODE_ENV: 'test', PORT: '0', HOST: '127.0.0.1', TICK_ENABLED: 'false', DEV_MODE: '1', SYNC_DATABASE_URL: db.url, MANA_SERVICE_KEY: KEY });
  coordinator = await startCoordinator({ config, sql: db.sql, log });
});

afterAll(async () => {
  await coordinator?.stop();
  await db?.drop();
});

const base = Date.now() + 60_000;
const at = (sec: number) => new Date(base + sec * 1000).toISOString();
const row = rowMaker((n) => ({ createdAt: at(n) }));

/** A JSON text nested `depth` arrays deep (built as text: JSON.stringify itself cannot). */
const deepJson = (depth: number) => `{"title": ${'['.repeat(depth)}"bottom"${']'.repeat(depth)}}`;

async function skippedMetric(): Promise<number> {
  const text = await (await fetch(`${coordinator.url}/metrics`)).text();
  const m = /^mana_ai_projection_rows_skipped_total (\d+)/m.exec(text);
  expect(m).not.toBeNull();
  return Number(m![1]);
}

const malformedLogs = () => lines.filter((l) => l['msg'] === 'skipping malformed sync_changes row');

describe('malformed rows', () => {
  // Rows mana-sync's read cannot decode (every pull of the user would fail) or devices drop.
  const bad: [string, Partial<LogRow>][] = [
    ['data an array', { data: [{ title: 'x' }] }],
    ['data a JSON string', { data: 'oops' }],
    ['data a number', { data: 7 }],
    ['unknown op', { op: 'upsert' }],
    ['field_meta value an object', { fieldMeta: { title: { at: '2026-01-01T00:00:00Z', actor: { kind: 'user' } } } }],
    ['field_meta value a number', { fieldMeta: { title: 12345 } }],
    ['field_meta not an object', { fieldMeta: ['title'] }],
    ['actor not an object', { actor: 'user' }],
    ['record id empty', { recordId: '', op: 'insert' }],
    ['an insert stamp that cannot be compared', { op: 'insert', data: { title: 'x', updatedAt: { toString: 'no' } } }],
  ];
  // Postgres accepts this depth and JSON.parse reads it, but JSON.stringify (the write-back) throws.
  const DEEP = 6000;

  it('are skipped and counted, the good rows of the same batch applied, logged once each', async () => {
    const good = [
      row({ recordId: 'good1', op: 'insert', data: { title: 'first good', state: 'active' } }),
      row({ recordId: 'good2', op: 'insert', data: { title: 'a big but valid value', objective: 'y'.repeat(2_000_000) } }),
    ];
    const rows = [good[0]!, ...bad.map(([, p]) => row({ recordId: 'm1', ...p })), good[1]!];
    const before = await skippedMetric();
    await insertRows(db.sql, rows);
    const deepRow = row({ recordId: 'm1' });
    await db.sql`
      INSERT INTO sync_changes (id, app_id, table_name, record_id, user_id, op, data, created_at)
      VALUES (${deepRow.id}::uuid, 'ai', 'aiMissions', 'm1', 'u1', 'update', ${deepJson(DEEP)}::text::jsonb, ${deepRow.createdAt}::text::timestamptz)`;
    const badIds = [...rows.slice(1, -1).map((r) => r.id), deepRow.id];

    const stats = await coordinator.scheduler.runOnce();
    expect(stats.rowsSkipped).toBe(badIds.length);
    expect(stats.rowsApplied).toBe(2);
    expect(await skippedMetric()).toBe(before + badIds.length);

    expect(await readRecord(db.sql, 'u1', 'good1')).toEqual({ id: 'good1', title: 'first good', state: 'active' });
    expect((await readRecord(db.sql, 'u1', 'good2'))?.['objective']).toHaveLength(2_000_000);
    // Every row of m1 was malformed: no record.
    expect(await readRecord(db.sql, 'u1', 'm1')).toBeUndefined();

    const logged = malformedLogs();
    expect(logged).toHaveLength(badIds.length);
    expect(new Set(logged.map((l) => l['rowId']))).toEqual(new Set(badIds));
    for (const l of logged) {
      expect(l['level']).toBe(40);
      expect(typeof l['reason']).toBe('string');
      // A log line about a huge row stays small.
      expect(JSON.stringify(l).length).toBeLessThan(1000);
    }
  });

  it('are not counted or logged again by later passes, nor by a rebuild that replays them', async () => {
    const before = await skippedMetric();
    const loggedBefore = malformedLogs().length;
    // A valid insert, then a late delete before it (same record m1): the
    // rebuild replays every m1 row, the malformed ones included.
    await insertRows(db.sql, [row({ recordId: 'm1', op: 'insert', data: { title: 'now valid' }, createdAt: at(1000) })]);
    expect((await coordinator.scheduler.runOnce()).rowsApplied).toBe(1);
    await insertRows(db.sql, [row({ recordId: 'm1', op: 'delete', data: null, createdAt: at(999) }), row({ recordId: 'm1', op: 'merge', createdAt: at(1001) })]);
    const stats = await coordinator.scheduler.runOnce();
    expect(stats.rowsApplied).toBe(1);
    expect(stats.rowsSkipped).toBe(1);
    expect(await skippedMetric()).toBe(before + 1);
    expect(malformedLogs()).toHaveLength(loggedBefore + 1);
    expect(await readRecord(db.sql, 'u1', 'm1')).toEqual({ id: 'm1', title: 'now valid' });

    const idle = await coordinator.scheduler.runOnce();
    expect(idle.rowsSkipped).toBe(0);
    expect(malformedLogs()).toHaveLength(loggedBefore + 1);
  });

  it('the tick route reports them too, and the coordinator keeps answering', async () => {
    await insertRows(db.sql, [row({ recordId: 'm9', op: 'bogus' }), row({ recordId: 'm9', op: 'insert', data: { title: 'ok' } })]);
    const res = await fetch(`${coordinator.url}/internal/tick`, { method: 'POST', headers: { 'x-service-key': KEY } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ rowsApplied: 1, rowsSkipped: 1 });
    expect((await fetch(`${coordinator.url}/ready`)).status).toBe(200);
  });

  it('a number beyond the double range is skipped, not written back as null', async () => {
    // JSON.parse turns 1e400 into Infinity, and JSON.stringify writes that as null.
    const id = '00000000-0000-4000-8000-0000000e1400';
    await db.sql`
      INSERT INTO sync_changes (id, app_id, table_name, record_id, user_id, op, data, created_at)
      VALUES (${id}::uuid, 'ai', 'aiMissions', 'm10', 'u1', 'insert', '{"title": "huge", "weight": 1e400}'::jsonb, ${at(2000)}::text::timestamptz)`;
    const stats = await coordinator.scheduler.runOnce();
    expect(stats.rowsSkipped).toBe(1);
    expect(await readRecord(db.sql, 'u1', 'm10')).toBeUndefined();
    expect(malformedLogs().some((l) => l['rowId'] === id)).toBe(true);
  });
});
