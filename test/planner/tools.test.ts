import { describe, expect, it } from 'vitest';
import { TOOL_CATALOG, toolByName } from '../../src/planner/tools.js';

describe('TOOL_CATALOG', () => {
  it('lists exactly the propose-only tools of docs/contract.md §3 with their params', () => {
    const summary = Object.fromEntries(
      TOOL_CATALOG.map((t) => [t.name, t.parameters.map((p) => `${p.name}${p.required ? '' : '?'}`).join(',')]),
    );
    expect(summary).toEqual({
      create_task: 'title,dueDate?,priority?',
      complete_task: 'taskId',
      create_event: 'title,startsAt,endsAt?',
      create_note: 'title,body',
      append_to_note: 'noteId,text',
      create_goal: 'title,targetDate?',
      log_habit: 'habitId',
      create_journal_entry: 'body',
      save_news_article: 'url,title?',
    });
  });

  it('has unique names, a module and description on every tool and param', () => {
    expect(new Set(TOOL_CATALOG.map((t) => t.name)).size).toBe(TOOL_CATALOG.length);
    for (const t of TOOL_CATALOG) {
      expect(t.module, t.name).not.toBe('');
      expect(t.description, t.name).not.toBe('');
      for (const p of t.parameters) {
        expect(p.description, `${t.name}.${p.name}`).not.toBe('');
        expect(['string', 'number', 'boolean']).toContain(p.type);
      }
    }
  });

  it('constrains create_task.priority to low|medium|high', () => {
    const priority = toolByName('create_task')?.parameters.find((p) => p.name === 'priority');
    expect(priority?.enum).toEqual(['low', 'medium', 'high']);
  });

  it('is frozen, so no caller can widen what the model may propose', () => {
    expect(Object.isFrozen(TOOL_CATALOG)).toBe(true);
    const task = toolByName('create_task')!;
    expect(Object.isFrozen(task)).toBe(true);
    expect(Object.isFrozen(task.parameters)).toBe(true);
    expect(Object.isFrozen(task.parameters[0])).toBe(true);
    expect(() => (TOOL_CATALOG as unknown as unknown[]).push({})).toThrow();
  });
});

describe('toolByName', () => {
  it('finds by exact name only', () => {
    expect(toolByName('log_habit')?.module).toBe('habits');
    expect(toolByName('LOG_HABIT')).toBeUndefined();
    expect(toolByName('delete_everything')).toBeUndefined();
  });

  it('searches a given catalog', () => {
    const custom = [{ name: 'x', module: 'm', description: 'd', parameters: [] }];
    expect(toolByName('x', custom)).toBe(custom[0]);
    expect(toolByName('create_task', custom)).toBeUndefined();
  });
});
