import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { extractJson, parsePlan } from '../../src/planner/parse.js';
import type { ToolSpec } from '../../src/planner/tools.js';

const step = (extra: Record<string, unknown> = {}) => ({
  summary: 'Plan the long run',
  toolName: 'create_task',
  params: { title: 'Long run 25 km', dueDate: '2024-05-12', priority: 'high' },
  rationale: 'The training log shows the last long run was two weeks ago.',
  ...extra,
});
const plan = (steps: unknown[] = [step()], extra: Record<string, unknown> = {}) => ({
  summary: 'Keep the long runs going',
  steps,
  ...extra,
});
const json = (value: unknown) => JSON.stringify(value, null, 2);

function reasonOf(text: string, tools?: readonly ToolSpec[]): string {
  const r = parsePlan(text, tools);
  if (r.ok) throw new Error('expected the plan to be rejected');
  return r.reason;
}

describe('parsePlan: where the JSON is', () => {
  it.each([
    ['bare JSON', json(plan())],
    ['bare JSON with whitespace around', `\n\n  ${json(plan())}  \n`],
    ['```json fence in prose', `Here is my plan:\n\n\`\`\`json\n${json(plan())}\n\`\`\`\n\nLet me know!`],
    ['```JSON fence (tag in capitals)', `Plan:\n\`\`\`JSON\n${json(plan())}\n\`\`\``],
    ['plain ``` fence', `Sure.\n\`\`\`\n${json(plan())}\n\`\`\``],
    ['fence on one line', `Plan: \`\`\`json ${JSON.stringify(plan())}\`\`\``],
    ['CRLF line ends', `Plan:\r\n\`\`\`json\r\n${json(plan())}\r\n\`\`\`\r\n`],
    ['json fence after a fence in another language', `\`\`\`ts\nconst x = 1;\n\`\`\`\n\`\`\`json\n${json(plan())}\n\`\`\``],
  ])('%s', (_name, text) => {
    const r = parsePlan(text);
    expect(r).toEqual({
      ok: true,
      plan: {
        summary: 'Keep the long runs going',
        steps: [
          {
            summary: 'Plan the long run',
            toolName: 'create_task',
            params: { title: 'Long run 25 km', dueDate: '2024-05-12', priority: 'high' },
            rationale: 'The training log shows the last long run was two weeks ago.',
          },
        ],
      },
    });
  });

  it('prefers the ```json fence over an earlier plain fence', () => {
    const text = `\`\`\`\n{"not": "it"}\n\`\`\`\n\`\`\`json\n${json(plan())}\n\`\`\``;
    expect(parsePlan(text).ok).toBe(true);
  });

  it('accepts an empty plan (a valid no-op run)', () => {
    expect(parsePlan(json(plan([])))).toEqual({ ok: true, plan: { summary: 'Keep the long runs going', steps: [] } });
  });

  it.each([
    ['prose only', 'I think you should rest today.', 'no JSON object found in reply'],
    ['empty reply', '   ', 'no JSON object found in reply'],
    ['a fence in another language only', '```python\nprint(1)\n```', 'no JSON object found in reply'],
    ['cut-off fence', 'Plan:\n```json\n{"summary": "x", "steps": [', 'no JSON object found in reply (unclosed ``` fence'],
    ['broken JSON', '{"summary": "x", "steps": [}', 'invalid JSON: '],
    ['broken JSON in a fence', 'Plan:\n```json\n{summary: "x"}\n```', 'invalid JSON: '],
    ['JSON with trailing prose', `${json(plan())}\nHope this helps!`, 'invalid JSON: '],
    ['top-level array', '[1, 2]', 'expected a JSON object, got an array'],
  ])('%s → %j', (_name, text, expected) => {
    expect(reasonOf(text)).toContain(expected);
  });
});

describe('parsePlan: the plan envelope', () => {
  it.each([
    ['missing summary', { steps: [] }, 'summary: missing (expected a non-empty string)'],
    ['blank summary', { summary: '  ', steps: [] }, 'summary: expected a non-empty string, got ""'],
    ['summary not a string', { summary: 3, steps: [] }, 'summary: expected a non-empty string, got number 3'],
    ['missing steps', { summary: 'x' }, 'steps: missing (expected an array)'],
    ['steps not an array', { summary: 'x', steps: {} }, 'steps: expected an array, got an object'],
    ['unknown top-level key', { summary: 'x', steps: [], confidence: 0.9 }, 'plan: unexpected key "confidence"'],
    ['too many steps', plan(Array.from({ length: 11 }, () => step())), 'steps: expected at most 10 steps, got 11'],
  ])('%s', (_name, value, expected) => {
    expect(reasonOf(json(value))).toContain(expected);
  });

  it('accepts 10 steps (the prompt asks for 5; a few more are tolerated)', () => {
    expect(parsePlan(json(plan(Array.from({ length: 10 }, () => step())))).ok).toBe(true);
  });
});

describe('parsePlan: steps', () => {
  it.each([
    ['missing rationale', [step(), step({ rationale: undefined })], 'missing rationale in step 2'],
    ['blank rationale', [step({ rationale: ' ' })], 'missing rationale in step 1'],
    ['rationale not a string', [step({ rationale: ['a'] })], 'missing rationale in step 1 (expected a non-empty string, got an array)'],
    ['missing summary', [step({ summary: undefined })], 'step 1: summary: missing'],
    ['params not an object', [step({ params: ['title'] })], 'step 1: params: expected an object, got an array'],
    ['params missing', [step({ params: undefined })], 'step 1: params: missing'],
    ['step not an object', ['create_task'], 'step 1: expected an object, got "create_task"'],
    ['unknown step key', [step({ confidence: 1 })], 'step 1: unexpected key "confidence"'],
    ['missing required param', [step({ params: { priority: 'low' } })], 'step 1 (create_task): title: missing (expected a string)'],
    ['blank required string', [step({ params: { title: '   ' } })], 'step 1 (create_task): title: expected a non-empty string'],
    ['param of the wrong type', [step({ params: { title: 42 } })], 'step 1 (create_task): title: expected a string, got number 42'],
    ['enum value not allowed', [step({ params: { title: 't', priority: 'urgent' } })], 'step 1 (create_task): priority: expected one of "low" | "medium" | "high", got "urgent"'],
    ['unknown param', [step({ params: { title: 't', assignee: 'bob' } })], 'step 1 (create_task): unknown param "assignee" (expected: title, dueDate, priority)'],
    ['complete_task without taskId', [step({ toolName: 'complete_task', params: {} })], 'step 1 (complete_task): taskId: missing'],
    ['required param given as null', [step({ toolName: 'log_habit', params: { habitId: null } })], 'step 1 (log_habit): habitId: expected a string, got null'],
  ])('%s', (_name, steps, expected) => {
    expect(reasonOf(json(plan(steps)))).toContain(expected);
  });

  it('reports every problem of one step, not just the first', () => {
    const reason = reasonOf(json(plan([step({ rationale: '', params: { priority: 'urgent', foo: 1 } })])));
    expect(reason).toContain('missing rationale in step 1');
    expect(reason).toContain('step 1 (create_task): title: missing');
    expect(reason).toContain('priority: expected one of');
    expect(reason).toContain('unknown param "foo"');
  });

  it('reports problems of several steps at once, and caps the list', () => {
    const steps = Array.from({ length: 8 }, () => step({ rationale: '' }));
    const reason = reasonOf(json(plan(steps)));
    expect(reason).toContain('missing rationale in step 1');
    expect(reason).toContain('missing rationale in step 5');
    expect(reason).not.toContain('step 6');
    expect(reason).toMatch(/; and 3 more$/);
  });

  it('drops optional params sent as null or "" and trims strings', () => {
    const r = parsePlan(json(plan([step({ summary: '  Run  ', params: { title: ' Run ', dueDate: null, priority: '' } })])));
    expect(r.ok && r.plan.steps[0]).toEqual({
      summary: 'Run',
      toolName: 'create_task',
      params: { title: 'Run' },
      rationale: 'The training log shows the last long run was two weeks ago.',
    });
  });

  it('accepts every catalog tool with its required params', () => {
    const steps = [
      step({ toolName: 'complete_task', params: { taskId: 't-1' } }),
      step({ toolName: 'create_event', params: { title: 'Run', startsAt: '2024-05-12T08:00:00+02:00' } }),
      step({ toolName: 'create_note', params: { title: 'n', body: 'b' } }),
      step({ toolName: 'append_to_note', params: { noteId: 'n-1', text: 'more' } }),
      step({ toolName: 'create_goal', params: { title: 'g', targetDate: '2024-09-29' } }),
      step({ toolName: 'log_habit', params: { habitId: 'h-1' } }),
      step({ toolName: 'create_journal_entry', params: { body: 'felt good' } }),
      step({ toolName: 'save_news_article', params: { url: 'https://example.org/a' } }),
    ];
    const r = parsePlan(json(plan(steps)));
    expect(r.ok).toBe(true);
    expect(r.ok && r.plan.steps.map((s) => s.toolName)).toEqual(steps.map((s) => s.toolName));
  });

  it('checks number and boolean params of a custom catalog', () => {
    const tools: ToolSpec[] = [
      {
        name: 'set_timer',
        module: 'timer',
        description: 'd',
        parameters: [
          { name: 'minutes', type: 'number', required: true, description: 'm' },
          { name: 'loud', type: 'boolean', required: false, description: 'l' },
        ],
      },
    ];
    const ok = parsePlan(json(plan([step({ toolName: 'set_timer', params: { minutes: 5, loud: true } })])), tools);
    expect(ok.ok && ok.plan.steps[0]?.params).toEqual({ minutes: 5, loud: true });
    expect(reasonOf(json(plan([step({ toolName: 'set_timer', params: { minutes: '5' } })])), tools)).toContain(
      'step 1 (set_timer): minutes: expected a number, got "5"',
    );
    expect(reasonOf(json(plan([step({ toolName: 'set_timer', params: { minutes: 5, loud: 'yes' } })])), tools)).toContain(
      'loud: expected a boolean, got "yes"',
    );
    expect(parsePlan(json(plan([step()])), tools)).toEqual({
      ok: true,
      plan: { summary: 'Keep the long runs going', steps: [] },
      dropped: [{ step: 1, toolName: 'create_task', why: 'unknown' }],
    });
  });
});

describe('parsePlan: steps naming a tool the plan may not hold', () => {
  it('drops a step naming a tool outside the catalog; the rest of the plan stands', () => {
    const r = parsePlan(json(plan([step(), step({ toolName: 'delete_everything' }), step({ summary: 'Third' })])));
    expect(r.ok && r.plan.steps.map((s) => s.summary)).toEqual(['Plan the long run', 'Third']);
    expect(r.ok && r.dropped).toEqual([{ step: 2, toolName: 'delete_everything', why: 'unknown' }]);
  });

  it('drops a step naming a denied tool, and only that one', () => {
    const denied = new Set(['create_task']);
    const r = parsePlan(json(plan([step(), step({ toolName: 'create_note', params: { title: 'n', body: 'b' } })])), undefined, { denied });
    expect(r.ok && r.plan.steps.map((s) => s.toolName)).toEqual(['create_note']);
    expect(r.ok && r.dropped).toEqual([{ step: 1, toolName: 'create_task', why: 'denied' }]);
  });

  it('drops such a step whatever else is wrong with it: it is never written', () => {
    const r = parsePlan(json(plan([step({ toolName: 'create_task', rationale: '', params: { nope: 1 } }), step({ toolName: 'send_email', rationale: 5 })])), undefined, {
      denied: new Set(['create_task']),
    });
    expect(r).toEqual({
      ok: true,
      plan: { summary: 'Keep the long runs going', steps: [] },
      dropped: [
        { step: 1, toolName: 'create_task', why: 'denied' },
        { step: 2, toolName: 'send_email', why: 'unknown' },
      ],
    });
  });

  it('a bad step of an allowed tool still makes the plan unusable', () => {
    const text = json(plan([step({ toolName: 'send_email' }), step({ rationale: '' })]));
    expect(reasonOf(text)).toBe('missing rationale in step 2 (expected a non-empty string, got "")');
  });

  it('a toolName that is not a string is a malformed step, not a dropped one', () => {
    expect(reasonOf(json(plan([step({ toolName: 42 })])))).toContain('step 1: toolName: expected a non-empty string, got number 42');
  });

  it('no denied tool in any kept step, whatever the model sends (property)', () => {
    const names = ['create_task', 'create_note', 'send_email', 'log_habit', 'x'];
    fc.assert(
      fc.property(fc.subarray(names), fc.array(fc.constantFrom(...names), { maxLength: 10 }), (deniedList, picked) => {
        const denied = new Set(deniedList);
        const params: Record<string, Record<string, string>> = { create_task: { title: 't' }, create_note: { title: 't', body: 'b' }, log_habit: { habitId: 'h' } };
        const steps = picked.map((toolName) => step({ toolName, params: params[toolName] ?? {} }));
        const r = parsePlan(json(plan(steps)), undefined, { denied });
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        expect(r.plan.steps.every((s) => !denied.has(s.toolName) && ['create_task', 'create_note', 'log_habit'].includes(s.toolName))).toBe(true);
        expect(r.plan.steps.length + (r.dropped?.length ?? 0)).toBe(picked.length);
      }),
    );
  });
});

describe('extractJson', () => {
  it('returns the parsed value', () => {
    expect(extractJson('```json\n{"a": 1}\n```')).toEqual({ ok: true, value: { a: 1 } });
  });
});

describe('parsePlan never throws', () => {
  it('on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        const r = parsePlan(text);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 300 },
    );
  });

  it('on arbitrary JSON values, bare or fenced', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.boolean(), (value, fenced) => {
        const body = JSON.stringify(value) ?? 'null';
        const r = parsePlan(fenced ? `Here:\n\`\`\`json\n${body}\n\`\`\`` : body);
        if (!r.ok) expect(r.reason.length).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });

  it('on a non-string reply', () => {
    expect(parsePlan(undefined as unknown as string)).toEqual({ ok: false, reason: 'expected the reply as text, got nothing' });
  });
});
