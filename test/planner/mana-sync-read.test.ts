/**
 * The reader in test/support/mana-sync-read.ts is as strict as mana-sync's
 * read and the webapp's check: rows they refuse, it refuses, at the same
 * stage. (Without this, a round trip through it would prove little.) And the
 * row builder's output, stored as jsonb keeps it, reads back as the fields
 * that were written, for any JSON the fields hold.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { aiActor, missionUpdateRow, RUNNER_CLIENT_ID } from '../../src/planner/writeback-row.js';
import { readLikeManaSync, type StoredRow } from '../support/mana-sync-read.js';

const ROW: StoredRow = {
  id: '00000000-0000-4000-8000-000000000001',
  tableName: 'aiMissions',
  recordId: 'm1',
  op: 'update',
  data: '{"iterations": []}',
  fieldMeta: '{"iterations": "2026-01-02T03:04:05.678Z"}',
  clientId: 'device-1',
  createdAt: '2026-01-02 03:04:05.678+00',
  schemaVersion: 1,
  spaceId: null,
  actor: null,
  origin: null,
};

describe('the reader refuses what mana-sync or the webapp refuse', () => {
  it.each<[string, Partial<StoredRow>, 'scan' | 'decode' | 'device', RegExp]>([
    ['field_meta with an object per field (the webapp-local triple)', { fieldMeta: '{"iterations": {"at": "2026-01-02T03:04:05.678Z", "origin": "system"}}' }, 'decode', /cannot unmarshal object into Go value of type string/],
    ['field_meta with a number', { fieldMeta: '{"iterations": 5}' }, 'decode', /cannot unmarshal number/],
    ['field_meta an array', { fieldMeta: '["iterations"]' }, 'decode', /map\[string\]string/],
    ['data an array', { data: '[1, 2]' }, 'decode', /cannot unmarshal array into Go value of type map/],
    ['data a string', { data: '"x"' }, 'decode', /cannot unmarshal string/],
    ['a number no double holds', { data: '{"n": 1e400}' }, 'decode', /float64/],
    ['client_id NULL', { clientId: null }, 'scan', /client_id/],
    ['schema_version NULL', { schemaVersion: null }, 'scan', /schema_version/],
    ['actor JSON null', { actor: 'null' }, 'device', /actor/],
    ['actor a string', { actor: '"mana-ai"' }, 'device', /actor/],
    ['an unknown op', { op: 'upsert' }, 'device', /op/],
    ['an empty record id', { recordId: '' }, 'device', /id/],
  ])('%s', (_name, change, stage, error) => {
    const out = readLikeManaSync({ ...ROW, ...change });
    expect(out.ok).toBe(false);
    if (!out.ok) {
      expect(out.stage).toBe(stage);
      expect(out.error).toMatch(error);
    }
  });

  it('takes what they take: string stamps, null stamps (as ""), JSON null data and field_meta, an object actor', () => {
    expect(readLikeManaSync(ROW)).toMatchObject({ ok: true, change: { op: 'update', fields: { iterations: { value: [], at: '2026-01-02T03:04:05.678Z' } } } });
    expect(readLikeManaSync({ ...ROW, fieldMeta: '{"iterations": null}' })).toMatchObject({ ok: true, change: { fields: { iterations: { value: [], at: '' } } } });
    const bare = readLikeManaSync({ ...ROW, data: 'null', fieldMeta: 'null', actor: '{"kind": "user"}', origin: 'user' });
    expect(bare).toMatchObject({ ok: true, change: { actor: { kind: 'user' }, origin: 'user' } });
    if (bare.ok) expect(bare.change.fields).toBeUndefined();
  });

  it('an update carries only fields with both a value and a stamp; a delete only a string deletedAt', () => {
    const upd = readLikeManaSync({ ...ROW, data: '{"a": 1, "b": 2}', fieldMeta: '{"b": "t", "c": "t"}' });
    expect(upd.ok && upd.change.fields).toEqual({ b: { value: 2, at: 't' } });
    const del = readLikeManaSync({ ...ROW, op: 'delete', data: '{"deletedAt": 5}', fieldMeta: '{}' });
    expect(del.ok && del.change.deletedAt).toBeUndefined();
    const soft = readLikeManaSync({ ...ROW, op: 'delete', data: '{"deletedAt": "2026-01-01T00:00:00.000Z"}', fieldMeta: '{}' });
    expect(soft.ok && soft.change.deletedAt).toBe('2026-01-01T00:00:00.000Z');
  });
});

/** What Postgres keeps of a JS value in jsonb: its JSON (no -0, no undefined). */
const asJson = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

/** The builder's row as mana-sync's select returns it. */
function stored(row: Record<string, unknown>): StoredRow {
  return {
    ...ROW,
    op: row['op'] as string,
    recordId: row['record_id'] as string,
    data: JSON.stringify(row['data']),
    fieldMeta: row['field_meta'] === undefined ? '{}' : JSON.stringify(row['field_meta']),
    clientId: row['client_id'] as string,
    spaceId: (row['space_id'] as string | undefined) ?? null,
    actor: row['actor'] === undefined ? null : JSON.stringify(row['actor']),
    origin: (row['origin'] as string | undefined) ?? null,
  };
}

const noNul = (s: string) => !s.includes('\u0000');
const jsonValue = fc.jsonValue({ maxDepth: 3 }).filter((v) => noNul(JSON.stringify(v)));

describe('the builder round-trips through the reader', () => {
  it('for any JSON fields, any space and objective: the device gets exactly those fields, each at the one stamp, from the AI actor', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }).filter(noNul), jsonValue, { minKeys: 1, maxKeys: 5 }),
        fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }),
        fc.option(fc.string({ maxLength: 20 }).filter(noNul)),
        fc.option(fc.string({ maxLength: 40 }).filter(noNul)),
        (data, at, spaceId, objective) => {
          const actor = aiActor({ missionId: 'm1', iterationId: '00000000-0000-5000-8000-000000000002', objective });
          const row = missionUpdateRow({ userId: 'u1', missionId: 'm1', data, at, actor, spaceId: spaceId || null }, { fieldMeta: true, actor: true, origin: true, spaceId: true });
          const out = readLikeManaSync(stored(row));
          if (!out.ok) throw new Error(`${out.stage}: ${out.error}`);
          const fields = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, { value: asJson(v) ?? null, at: at.toISOString() }]));
          expect(out.change.fields).toEqual(fields);
          expect(out.change).toMatchObject({ table: 'aiMissions', id: 'm1', op: 'update', origin: 'agent', actor: asJson(actor) });
          expect(out.change.spaceId).toBe(spaceId || undefined);
          expect(row['client_id']).toBe(RUNNER_CLIENT_ID);
          expect(Object.keys(row['data'] as object).sort()).toEqual(Object.keys(data).sort());
        },
      ),
      {
        numRuns: 300,
        // A field named __proto__ is a plain key to mana-sync and to the device's JSON.parse.
        examples: [[JSON.parse('{"__proto__":[]," ":[]}') as Record<string, fc.JsonValue>, new Date('2000-01-01T00:00:00.000Z'), null, null]],
      },
    );
  });

  it('on a table without field_meta the stamps go to field_timestamps, in the same form; optional columns only when the table has them', () => {
    const at = new Date('2026-03-04T05:06:07.089Z');
    const actor = aiActor({ missionId: 'm1', iterationId: 'i' });
    const row = missionUpdateRow({ userId: 'u', missionId: 'm1', data: { iterations: [], nextRunAt: null }, at, actor, spaceId: 's1' }, { fieldMeta: false, actor: false, origin: false, spaceId: false });
    expect(row).toEqual({
      app_id: 'ai',
      table_name: 'aiMissions',
      record_id: 'm1',
      user_id: 'u',
      op: 'update',
      data: { iterations: [], nextRunAt: null },
      field_timestamps: { iterations: '2026-03-04T05:06:07.089Z', nextRunAt: '2026-03-04T05:06:07.089Z' },
      client_id: 'mana-ai-runner',
    });
  });

  it('the actor: the given agent, else the default agent; the objective as rationale unless encrypted or missing', () => {
    expect(aiActor({ missionId: 'm', iterationId: 'i', objective: 'Ship it' })).toEqual({ kind: 'ai', principalId: 'legacy:ai-default', displayName: 'Mana', missionId: 'm', iterationId: 'i', rationale: 'Ship it' });
    expect(aiActor({ principal: { id: 'agent-7', displayName: 'Cashflow Watcher' }, missionId: 'm', iterationId: 'i', objective: 'enc:1:abc' })).toEqual({
      kind: 'ai',
      principalId: 'agent-7',
      displayName: 'Cashflow Watcher',
      missionId: 'm',
      iterationId: 'i',
      rationale: '',
    });
    expect(aiActor({ missionId: 'm', iterationId: 'i', objective: { x: 1 } }).rationale).toBe('');
  });
});
