/**
 * The ONE catalog of tools the server-side planner may propose
 * (docs/contract.md §3). Prompt building and plan parsing both read it, so a tool
 * added here is offered to the LLM and accepted from it in one change.
 *
 * The server never executes a step: the user's device runs each planned
 * step of a server iteration when sync delivers it, with the webapp's own
 * tool of this name (docs/contract.md §2).
 */

/** The JSON types a tool parameter may take. */
export type ToolParamType = 'string' | 'number' | 'boolean';

/** One parameter of a tool, as shown to the LLM and enforced by the parser. */
export interface ToolParam {
  readonly name: string;
  readonly type: ToolParamType;
  readonly required: boolean;
  readonly description: string;
  /** Allowed values (only for `string` parameters). */
  readonly enum?: readonly string[];
}

/** A tool the planner may propose. `module` is the webapp module that owns the records it touches. */
export interface ToolSpec {
  readonly name: string;
  readonly module: string;
  readonly description: string;
  readonly parameters: readonly ToolParam[];
}

function param(
  name: string,
  type: ToolParamType,
  required: boolean,
  description: string,
  allowed?: readonly string[],
): ToolParam {
  const base = { name, type, required, description };
  return Object.freeze(allowed ? { ...base, enum: Object.freeze([...allowed]) } : base);
}

function tool(name: string, module: string, description: string, parameters: ToolParam[]): ToolSpec {
  return Object.freeze({ name, module, description, parameters: Object.freeze(parameters) });
}

const ISO_DATE = 'ISO-8601 date (YYYY-MM-DD)';
const ISO_DATE_TIME = 'ISO-8601 date-time with offset (e.g. 2025-01-31T09:00:00+01:00)';

/** The propose-only tools, frozen so no caller can change what the LLM may ask for. */
export const TOOL_CATALOG: readonly ToolSpec[] = Object.freeze([
  tool('create_task', 'todo', 'Create a new task in the user\'s task list.', [
    param('title', 'string', true, 'Short task title.'),
    param('dueDate', 'string', false, `Due date, ${ISO_DATE}.`),
    param('priority', 'string', false, 'Task priority.', ['low', 'medium', 'high']),
  ]),
  tool('complete_task', 'todo', 'Mark an existing task as done.', [
    param('taskId', 'string', true, 'Id of a task from the inputs.'),
  ]),
  tool('create_event', 'calendar', 'Create a calendar event.', [
    param('title', 'string', true, 'Event title.'),
    param('startsAt', 'string', true, `Start, ${ISO_DATE_TIME}.`),
    param('endsAt', 'string', false, `End, ${ISO_DATE_TIME}; defaults to one hour after the start.`),
  ]),
  tool('create_note', 'notes', 'Create a new note.', [
    param('title', 'string', true, 'Note title.'),
    param('body', 'string', true, 'Note body in Markdown.'),
  ]),
  tool('append_to_note', 'notes', 'Append text to the end of an existing note.', [
    param('noteId', 'string', true, 'Id of a note from the inputs.'),
    param('text', 'string', true, 'Markdown to append.'),
  ]),
  tool('create_goal', 'goals', 'Create a goal.', [
    param('title', 'string', true, 'Goal title.'),
    param('targetDate', 'string', false, `Target date, ${ISO_DATE}.`),
  ]),
  tool('log_habit', 'habits', 'Log one completion of an existing habit for today.', [
    param('habitId', 'string', true, 'Id of a habit from the inputs.'),
  ]),
  tool('create_journal_entry', 'journal', 'Write a journal entry.', [
    param('body', 'string', true, 'Entry text in Markdown.'),
  ]),
  tool('save_news_article', 'news', 'Save a web article to the user\'s reading list.', [
    param('url', 'string', true, 'Absolute http(s) URL of the article.'),
    param('title', 'string', false, 'Article title.'),
  ]),
]);

/**
 * Looks a tool up by its exact name.
 * @param tools the catalog to search; the default is the server's catalog.
 * @returns the tool, or `undefined` when the name is not in the catalog.
 */
export function toolByName(name: string, tools: readonly ToolSpec[] = TOOL_CATALOG): ToolSpec | undefined {
  return tools.find((t) => t.name === name);
}
