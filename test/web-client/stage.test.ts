import { describe, expect, it } from 'vitest';
import { createMemoryDedupStore } from '../../web-client/src/dedup.js';
import type { MissionClientEventBody } from '../../web-client/src/lib/events.js';
import { serverIterations, stageServerIterations, type MissionIteration } from '../../web-client/src/lib/stage.js';
import { fakeLocks } from './fakes.js';

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

describe('serverIterations', () => {
  it('tolerates whatever a device wrote', () => {
    expect(serverIterations({ id: 'm' })).toEqual([]);
    expect(serverIterations({ id: 'm', iterations: 'x' })).toEqual([]);
    expect(serverIterations(mission).map((i) => i.id)).toEqual(['i-1', 'i-3']);
  });
});
