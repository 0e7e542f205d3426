/**
 * An agent's tool policy: by tool name, else by module, else the global
 * default, as the webapp decides it; a policy the coordinator cannot read
 * as rules is never taken as permission.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideTool, deniedToolNames, readPolicy, usableTools, type AgentPolicy } from '../../src/agents/policy.js';
import { TOOL_CATALOG } from '../../src/planner/tools.js';

const tool = (name: string) => TOOL_CATALOG.find((t) => t.name === name)!;
const names = (p: AgentPolicy) => usableTools(p, TOOL_CATALOG).map((t) => t.name);

describe('readPolicy', () => {
  it('reads the three levels, keeping only known decisions', () => {
    const p = readPolicy({ tools: { create_task: 'deny', log_habit: 'allow', x: 3 }, defaultsByModule: { notes: 'auto', todo: null }, defaultForAi: 'deny' });
    expect(p).toEqual({
      kind: 'rules',
      rules: { tools: new Map([['create_task', 'deny']]), byModule: new Map([['notes', 'auto']]), fallback: 'deny' },
    });
  });

  it.each([
    [undefined, { kind: 'none' }],
    [null, { kind: 'none' }],
    ['enc:1:abcdef', { kind: 'encrypted' }],
    ['deny', { kind: 'unreadable', detail: 'policy is a string, not an object' }],
    [[{ tools: {} }], { kind: 'unreadable', detail: 'policy is an array, not an object' }],
    [7, { kind: 'unreadable', detail: 'policy is a number, not an object' }],
  ])('%j → %j', (raw, expected) => {
    expect(readPolicy(raw)).toEqual(expected);
  });

  it('an object without levels falls back to the webapp default (propose)', () => {
    expect(names(readPolicy({}))).toEqual(TOOL_CATALOG.map((t) => t.name));
    expect(names(readPolicy({ defaultForAi: 'nonsense', tools: 'x', defaultsByModule: [1] }))).toEqual(TOOL_CATALOG.map((t) => t.name));
  });
});

describe('decideTool', () => {
  const p = readPolicy({ tools: { create_note: 'auto', create_task: 'deny' }, defaultsByModule: { notes: 'deny', todo: 'auto' }, defaultForAi: 'deny' });

  it('the tool entry first', () => {
    expect(decideTool(p, tool('create_note'))).toBe('auto');
    expect(decideTool(p, tool('create_task'))).toBe('deny');
  });

  it('then the module entry', () => {
    expect(decideTool(p, tool('append_to_note'))).toBe('deny');
    expect(decideTool(p, tool('complete_task'))).toBe('auto');
  });

  it('then the global default', () => {
    expect(decideTool(p, tool('create_goal'))).toBe('deny');
  });

  it('no policy: the webapp default decides, which denies none of the server tools', () => {
    expect(names({ kind: 'none' })).toEqual(TOOL_CATALOG.map((t) => t.name));
  });

  it('an unreadable or encrypted policy leaves no tool usable', () => {
    expect(names(readPolicy('deny'))).toEqual([]);
    expect(names(readPolicy('enc:1:x'))).toEqual([]);
    expect(deniedToolNames(readPolicy('enc:1:x'), TOOL_CATALOG).size).toBe(TOOL_CATALOG.length);
  });

  it('looks entries up as own keys only', () => {
    const proto = readPolicy(JSON.parse('{"tools": {"__proto__": "deny"}, "defaultsByModule": {"constructor": "deny"}, "defaultForAi": "auto"}'));
    expect(names(proto)).toEqual(TOOL_CATALOG.map((t) => t.name));
  });
});

describe('usable and denied tools', () => {
  it('partition the catalog, in catalog order (property)', () => {
    const decision = fc.constantFrom('auto', 'propose', 'deny', 'allow', 42, null);
    const modules = [...new Set(TOOL_CATALOG.map((t) => t.module))];
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...TOOL_CATALOG.map((t) => t.name)), decision),
        fc.dictionary(fc.constantFrom(...modules), decision),
        decision,
        (tools, defaultsByModule, defaultForAi) => {
          const p = readPolicy({ tools, defaultsByModule, defaultForAi });
          const usable = usableTools(p, TOOL_CATALOG);
          const denied = deniedToolNames(p, TOOL_CATALOG);
          expect(usable.length + denied.size).toBe(TOOL_CATALOG.length);
          for (const t of usable) expect(denied.has(t.name)).toBe(false);
          expect(usable).toEqual(TOOL_CATALOG.filter((t) => !denied.has(t.name)));
          // The webapp's rule, stated literally: the first known decision of tool, module, default.
          for (const t of TOOL_CATALOG) {
            const known = (v: unknown) => (v === 'auto' || v === 'propose' || v === 'deny' ? v : undefined);
            const webapp = known(tools[t.name]) ?? known(defaultsByModule[t.module]) ?? known(defaultForAi) ?? 'propose';
            expect(denied.has(t.name)).toBe(webapp === 'deny');
          }
        },
      ),
    );
  });
});
