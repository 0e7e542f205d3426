/**
 * Reading an agent record and finding a mission's agent: pure rules, with
 * hostile records from devices. A value the coordinator cannot use falls
 * back to the reading that plans less, never more; ciphertext never becomes
 * a prompt part.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  agentIdsToRead,
  builtInDefaultAgent,
  DEFAULT_AGENT_ID,
  DEFAULT_MAX_CONCURRENT,
  MAX_AGENT_ID_BYTES,
  missionAgentId,
  principalOf,
  readAgent,
  resolveMissionAgent,
} from '../../src/agents/agent.js';

const record = (extra: Record<string, unknown> = {}) => ({
  id: 'a-1',
  name: 'Cashflow Watcher',
  role: 'Keeps an eye on spending',
  state: 'active',
  maxConcurrentMissions: 2,
  policy: { tools: {}, defaultForAi: 'propose' },
  ...extra,
});

describe('readAgent: status', () => {
  it.each([
    ['active', {}, 'active'],
    ['paused', { state: 'paused' }, 'paused'],
    ['archived', { state: 'archived' }, 'archived'],
    ['soft-deleted', { deletedAt: '2026-01-01T00:00:00.000Z' }, 'deleted'],
    ['soft-deleted while paused', { deletedAt: '2026-01-01T00:00:00.000Z', state: 'paused' }, 'deleted'],
    ['deletedAt empty (not deleted, as the webapp reads it)', { deletedAt: '' }, 'active'],
    ['deletedAt null', { deletedAt: null }, 'active'],
    ['no state (rebuilt from updates alone)', { state: undefined }, 'active'],
    ['an unknown state', { state: 'sleeping' }, 'paused'],
    ['state of the wrong case', { state: 'Active' }, 'paused'],
    ['state not a string', { state: { active: true } }, 'paused'],
  ])('%s → %s', (_name, extra, status) => {
    expect(readAgent('a-1', record(extra)).status).toBe(status);
  });

  it('says why an unknown state plans nothing', () => {
    expect(readAgent('a-1', record({ state: 'x'.repeat(500) })).statusDetail).toMatch(/^unknown agent state "x{40}": not planned$/);
  });
});

describe('readAgent: bounds', () => {
  it.each([
    [{ maxConcurrentMissions: 3 }, 3],
    [{ maxConcurrentMissions: 0 }, 0],
    [{ maxConcurrentMissions: 2.7 }, 2],
    [{ maxConcurrentMissions: undefined }, DEFAULT_MAX_CONCURRENT],
    [{ maxConcurrentMissions: -1 }, DEFAULT_MAX_CONCURRENT],
    [{ maxConcurrentMissions: '5' }, DEFAULT_MAX_CONCURRENT],
    [{ maxConcurrentMissions: null }, DEFAULT_MAX_CONCURRENT],
  ])('maxConcurrentMissions %j → %s', (extra, max) => {
    expect(readAgent('a-1', record(extra)).maxConcurrentMissions).toBe(max);
  });

  it.each([
    [{}, null],
    [{ maxTokensPerDay: null }, null],
    [{ maxTokensPerDay: 50_000 }, 50_000],
    [{ maxTokensPerDay: 0 }, 0],
    [{ maxTokensPerDay: -5 }, null],
    [{ maxTokensPerDay: '1000' }, null],
    [{ maxTokensPerDay: Number.POSITIVE_INFINITY }, null],
  ])('maxTokensPerDay %j → %s', (extra, max) => {
    expect(readAgent('a-1', record(extra)).maxTokensPerDay).toBe(max);
  });
});

describe('readAgent: prompt parts', () => {
  it('takes plaintext name, role, instructions and memory', () => {
    const a = readAgent('a-1', record({ systemPrompt: 'Be brief.', memory: 'Saving for a bike.' }));
    expect(a.prompt).toEqual({ name: 'Cashflow Watcher', role: 'Keeps an eye on spending', systemPrompt: 'Be brief.', memory: 'Saving for a bike.' });
    expect(a.encrypted).toEqual([]);
  });

  it('leaves ciphertext out and names the fields that held it', () => {
    const a = readAgent('a-1', record({ systemPrompt: 'enc:1:abc', memory: 'enc:1:def', role: 'enc:1:ghi' }));
    expect(a.prompt).toEqual({ name: 'Cashflow Watcher' });
    expect(a.encrypted).toEqual(['role', 'systemPrompt', 'memory']);
  });

  it('leaves out blank and non-string values', () => {
    expect(readAgent('a-1', record({ name: '   ', role: 42, systemPrompt: { x: 1 }, memory: '' })).prompt).toEqual({});
  });

  it('never yields ciphertext or a non-string prompt part, whatever the record (property)', () => {
    const value = fc.oneof(fc.string(), fc.string().map((s) => `enc:1:${s}`), fc.integer(), fc.constant(null), fc.object(), fc.array(fc.string()));
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('name', 'role', 'systemPrompt', 'memory', 'state', 'policy', 'maxConcurrentMissions', 'maxTokensPerDay', 'deletedAt'), value), (rec) => {
        const a = readAgent('a-1', rec);
        for (const v of Object.values(a.prompt)) {
          expect(typeof v).toBe('string');
          expect(v.startsWith('enc:1:')).toBe(false);
        }
        expect(['active', 'paused', 'archived', 'deleted']).toContain(a.status);
        if (a.maxConcurrentMissions !== null) expect(Number.isInteger(a.maxConcurrentMissions) && a.maxConcurrentMissions >= 0).toBe(true);
      }),
    );
  });
});

describe("a mission's agent", () => {
  const records = (entries: [string, unknown][]) => new Map(entries);

  it('reads the agentId it names, when usable', () => {
    expect(missionAgentId({ agentId: 'a-1' })).toBe('a-1');
    for (const bad of [undefined, null, '', 42, { id: 'a-1' }, 'x'.repeat(MAX_AGENT_ID_BYTES + 1), 'é'.repeat(MAX_AGENT_ID_BYTES / 2 + 1)]) expect(missionAgentId({ agentId: bad })).toBeNull();
  });

  it('looks up its own agent and the default agent, once each', () => {
    expect(agentIdsToRead({ agentId: 'a-1' })).toEqual(['a-1', DEFAULT_AGENT_ID]);
    expect(agentIdsToRead({})).toEqual([DEFAULT_AGENT_ID]);
    expect(agentIdsToRead({ agentId: DEFAULT_AGENT_ID })).toEqual([DEFAULT_AGENT_ID]);
  });

  it('is its own agent when that record exists, even deleted (a deleted agent plans nothing)', () => {
    const a = resolveMissionAgent({ agentId: 'a-1' }, records([['a-1', record({ deletedAt: '2026-01-01' })], [DEFAULT_AGENT_ID, record({ id: DEFAULT_AGENT_ID })]]));
    expect(a).toMatchObject({ id: 'a-1', status: 'deleted', recorded: true });
  });

  it("is the default agent's record for a mission naming none, or naming a record that does not exist", () => {
    const found = records([[DEFAULT_AGENT_ID, record({ id: DEFAULT_AGENT_ID, state: 'paused' })]]);
    expect(resolveMissionAgent({}, found)).toMatchObject({ id: DEFAULT_AGENT_ID, status: 'paused', recorded: true });
    expect(resolveMissionAgent({ agentId: 'gone' }, found)).toMatchObject({ id: DEFAULT_AGENT_ID, status: 'paused' });
  });

  it('is the built-in default agent when the user has no record for either: active, unbounded, no policy', () => {
    expect(resolveMissionAgent({ agentId: 'gone' }, records([]))).toEqual(builtInDefaultAgent());
    expect(builtInDefaultAgent()).toMatchObject({ status: 'active', recorded: false, maxConcurrentMissions: null, maxTokensPerDay: null, policy: { kind: 'none' }, prompt: {} });
  });

  it("is planned as its principal: the agent's id and name, the default agent's name when it has no plaintext one", () => {
    expect(principalOf(readAgent('a-1', record()))).toEqual({ id: 'a-1', displayName: 'Cashflow Watcher' });
    expect(principalOf(readAgent('a-1', record({ name: 'enc:1:x' })))).toEqual({ id: 'a-1', displayName: 'Mana' });
    expect(principalOf(builtInDefaultAgent())).toEqual({ id: DEFAULT_AGENT_ID, displayName: 'Mana' });
  });

  it('skips a found value that is not a record', () => {
    expect(resolveMissionAgent({ agentId: 'a-1' }, records([['a-1', 'enc:1:x']]))).toEqual(builtInDefaultAgent());
  });
});
