/**
 * Which rows make a pass work out a mission's agent status again: a
 * mission row that writes agentId or removes the record. A mission row
 * that writes other fields, a soft delete, or another table's row does not.
 */
import { describe, expect, it } from 'vitest';
import { mayChangeAgent } from '../../src/projection/agent-status.js';
import type { Change } from '../../src/projection/wire.js';

const base = { id: 'r1', tableName: 'aiMissions', userId: 'u1', recordId: 'm1', spaceId: null, pos: '2026-12-07T00:00:00.000000Z|r1' };
const data = (fields: [string, unknown][], tableName = 'aiMissions'): Change => ({
  ...base,
  tableName,
  kind: 'data',
  plain: true,
  fields: fields.map(([k, v]) => [k, v, '2026-12-07T00:00:00.000Z']),
});

describe('mayChangeAgent', () => {
  it('is true for a mission row writing agentId, whatever its value', () => {
    expect(mayChangeAgent([data([['title', 'x'], ['agentId', 'a1']])])).toBe(true);
    expect(mayChangeAgent([data([['agentId', null]])])).toBe(true);
  });

  it('is true for a mission removed, among other rows', () => {
    expect(mayChangeAgent([data([['title', 'x']]), { ...base, kind: 'hard' }])).toBe(true);
  });

  it('is false for mission rows writing other fields, and for soft deletes', () => {
    expect(mayChangeAgent([data([['title', 'x'], ['nextRunAt', '2026-12-08T00:00:00.000Z']])])).toBe(false);
    expect(mayChangeAgent([{ ...base, kind: 'soft', plain: true, value: '2026-12-07T00:00:00.000Z', version: '2026-12-07T00:00:00.000Z' }])).toBe(false);
    expect(mayChangeAgent([])).toBe(false);
  });

  it("is false for an agent's own row: those change all of the user's missions through the agent records", () => {
    expect(mayChangeAgent([data([['agentId', 'a1'], ['state', 'paused']], 'agents')])).toBe(false);
  });
});
