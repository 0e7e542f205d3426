import { describe, expect, it, vi } from 'vitest';
import { createMemoryDedupStore, withMemoryFallback, type DedupStore } from '../../web-client/src/lib/dedup.js';
import { runNudge } from '../../web-client/src/lib/run-nudge.js';
import type { MissionClientEventBody } from '../../web-client/src/lib/events.js';
import { serverIterations, stageServerIterations, type MissionIteration } from '../../web-client/src/lib/stage.js';
import { fakeLocks, fakeOccurrences } from './fakes.js';

const startedAt = new Date().toISOString();
const it1: MissionIteration = { id: 'i-1', startedAt, plan: [], overallStatus: 'awaiting-review', source: 'server' };
const it2: MissionIteration = { id: 'i-2', startedAt, plan: [], overallStatus: 'awaiting-review', source: 'browser' };
const it3: MissionIteration = { id: 'i-3', startedAt, plan: [], overallStatus: 'awaiting-review', source: 'server' };
const mission = { id: 'm-1', iterations: [it1, it2, it3, null, 'junk', { source: 'server' }] };

describe.each([
  ['with Web Locks', () => fakeLocks()],
  ['without Web Locks', () => null],
])('stageServerIterations %s', (_name, locks) => {
  it('stages each server iteration once, across calls', async () => {
    const dedup = createMemoryDedupStore();
    const staged: string[] = [];
    const events: MissionClientEventBody[] = [];
    const deps = { dedup, locks: locks(), emit: (e: MissionClientEventBody) => events.push(e), stageIteration: async (_m: string, it: MissionIteration) => void staged.push(it.id) };
    expect(await stageServerIterations(mission, deps)).toEqual(['i-1', 'i-3']);
    expect(await stageServerIterations(mission, deps)).toEqual([]);
    expect(staged).toEqual(['i-1', 'i-3']);
    expect(events.map((e) => e.type)).toEqual(['staged', 'staged']);
  });

  it('retries an iteration whose staging failed', async () => {
    const dedup = createMemoryDedupStore();
    let fail = true;
    const staged: string[] = [];
    const deps = {
      dedup,
      locks: locks(),
      emit: () => undefined,
      stageIteration: async (_m: string, it: MissionIteration) => {
        if (fail && it.id === 'i-1') throw new Error('idb full');
        staged.push(it.id);
      },
    };
    expect(await stageServerIterations(mission, deps)).toEqual(['i-3']);
    fail = false;
    expect(await stageServerIterations(mission, deps)).toEqual(['i-1']);
  });

  it('does not stage what this device planned itself, but does stage after a release', async () => {
    const dedup = createMemoryDedupStore();
    await dedup.set('i-1', { state: 'planned' });
    await dedup.set('i-3', { state: 'elsewhere' });
    const deps = { dedup, locks: locks(), emit: () => undefined, stageIteration: async () => undefined };
    expect(await stageServerIterations(mission, deps)).toEqual(['i-3']);
  });
});

describe('staging records', () => {
  const day = 24 * 60 * 60_000;

  it('a late nudge answered "done elsewhere" does not make a staged iteration stage again (its own record)', async () => {
    const dedup = createMemoryDedupStore();
    const staged: string[] = [];
    const deps = { dedup, locks: null, emit: () => undefined, stageIteration: async (_m: string, it: MissionIteration) => void staged.push(it.id) };
    expect(await stageServerIterations(mission, deps)).toEqual(['i-1', 'i-3']);
    // A nudge for i-1 arrives late (a reconnect's pending list): the server answers 410, the mark says elsewhere.
    const nudge = { type: 'mission-due' as const, missionId: 'm-1', iterationId: 'i-1', dueAt: 'd' };
    await runNudge(nudge, { dedup, locks: null, emit: () => undefined, plan: async () => undefined, occurrences: fakeOccurrences({ kind: 'elsewhere', status: 410, code: 'gone' }) });
    expect((await dedup.get('i-1'))?.state).toBe('elsewhere');
    expect(await stageServerIterations(mission, deps)).toEqual([]);
    expect(staged).toEqual(['i-1', 'i-3']);
  });

  it('an iteration older than the records live is never staged, so a forgotten record cannot stage it twice', async () => {
    let now = Date.parse('2026-11-25T10:00:00Z');
    const dedup = createMemoryDedupStore({ maxAgeMs: 7 * day, now: () => now });
    const old: MissionIteration = { id: 'old', startedAt: new Date(now).toISOString(), plan: [], overallStatus: 'awaiting-review', source: 'server' };
    const staged: string[] = [];
    vi.useFakeTimers({ now });
    try {
      const deps = { dedup, locks: null, emit: () => undefined, maxAgeMs: 7 * day, stageIteration: async (_m: string, it: MissionIteration) => void staged.push(it.id) };
      expect(await stageServerIterations({ id: 'm', iterations: [old] }, deps)).toEqual(['old']);
      now += 8 * day;
      vi.setSystemTime(now);
      expect(await dedup.purge()).toBe(1);
      expect(await stageServerIterations({ id: 'm', iterations: [old] }, deps)).toEqual([]);
      expect(await stageServerIterations({ id: 'm', iterations: [{ ...old, id: 'no-start', startedAt: 'garbage' }] }, deps)).toEqual([]);
      expect(staged).toEqual(['old']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('with IndexedDB failing it still stages (in memory, once per context) and says so', async () => {
    const no = () => Promise.reject(new Error('QuotaExceededError'));
    const broken: DedupStore = { get: no, markUnless: no, set: no, forget: no, clear: no, purge: no, close: () => undefined };
    const warnings: unknown[] = [];
    const dedup = withMemoryFallback(broken, (e) => warnings.push(e));
    const staged: string[] = [];
    const deps = { dedup, locks: fakeLocks(), emit: () => undefined, stageIteration: async (_m: string, it: MissionIteration) => void staged.push(it.id) };
    expect(await stageServerIterations(mission, deps)).toEqual(['i-1', 'i-3']);
    expect(await stageServerIterations(mission, deps)).toEqual([]);
    expect(warnings).toHaveLength(1);
  });

  it('with the Web Lock free, a staging record left by a context that died mid-way is staged again', async () => {
    const dedup = createMemoryDedupStore();
    await dedup.set('stage:i-1', { state: 'staging' });
    const staged: string[] = [];
    const deps = { dedup, locks: fakeLocks(), emit: () => undefined, stageIteration: async (_m: string, it: MissionIteration) => void staged.push(it.id) };
    expect(await stageServerIterations(mission, deps)).toEqual(['i-1', 'i-3']);
    // Without Web Locks a fresh 'staging' record is another context at work: left alone.
    const other = createMemoryDedupStore();
    await other.set('stage:i-1', { state: 'staging' });
    expect(await stageServerIterations(mission, { ...deps, dedup: other, locks: null })).toEqual(['i-3']);
  });
});

describe('serverIterations', () => {
  it('tolerates whatever a device wrote', () => {
    expect(serverIterations({ id: 'm' })).toEqual([]);
    expect(serverIterations({ id: 'm', iterations: 'x' })).toEqual([]);
    expect(serverIterations(mission).map((i) => i.id)).toEqual(['i-1', 'i-3']);
  });
});
