/**
 * Turns an LLM reply into a validated plan (docs/contract.md §3), or into a reason
 * a human can act on. The model is untrusted: it may answer in prose, wrap
 * the JSON in a fence, invent tools or drop the rationale. A step naming a
 * tool outside the catalog, or one the mission's agent may not use, is
 * dropped from the plan (the webapp runs a server plan's steps on arrival);
 * the rest of the plan stands. Never throws.
 */
import { z } from 'zod';
import { TOOL_CATALOG, toolByName } from './tools.js';
import type { ToolParam, ToolSpec } from './tools.js';

/** A tool parameter value after validation. */
export type ParamValue = string | number | boolean;

/** One proposed step, validated against the tool catalog. */
export interface ParsedStep {
  summary: string;
  toolName: string;
  /** Only declared params; optional params given as `null` or `""` are dropped. */
  params: Record<string, ParamValue>;
  rationale: string;
}

/** A plan the model proposed; `steps` may be empty (a valid no-op run). */
export interface ParsedPlan {
  summary: string;
  steps: ParsedStep[];
}

/** A step left out of the plan because of the tool it names: not in the catalog, or denied to the agent. */
export interface DroppedStep {
  /** 1-based position in the reply. */
  step: number;
  toolName: string;
  why: 'unknown' | 'denied';
}

/** `dropped` is present only when a step was dropped. */
export type ParsePlanResult = { ok: true; plan: ParsedPlan; dropped?: DroppedStep[] } | { ok: false; reason: string };

export interface ParseOptions {
  /** Catalog tools the mission's agent may not use: a step naming one is dropped. */
  denied?: ReadonlySet<string>;
}
export type ExtractJsonResult = { ok: true; value: unknown } | { ok: false; reason: string };

/** The prompt asks for at most 5; a few more are tolerated before the plan is called runaway. */
export const MAX_PLAN_STEPS = 10;
/** How many problems a reason lists before it says "and N more". */
const MAX_REASONS = 5;

const nonEmpty = z.string().trim().min(1);

const PlanEnvelope = z.strictObject({
  summary: nonEmpty,
  steps: z.array(z.unknown()).max(MAX_PLAN_STEPS),
});

const StepShape = z.strictObject({
  summary: nonEmpty,
  toolName: z.string(),
  params: z.record(z.string(), z.unknown()),
  rationale: nonEmpty,
});

// A fence opens with ``` and an optional language tag; the body runs to the next ```.
const FENCE = /```[ \t]*([A-Za-z0-9_+-]*)[^\S\n]*\r?\n?([\s\S]*?)```/g;

/**
 * Finds the JSON object of a reply: the whole reply when it is bare JSON,
 * else the first ```json fence, else the first plain ``` fence holding an
 * object. Fences tagged with another language are ignored.
 */
export function extractJson(text: string): ExtractJsonResult {
  const trimmed = text.trim();
  let body: string | undefined;
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    body = trimmed;
  } else {
    const fences = [...trimmed.matchAll(FENCE)].map((m) => ({ tag: (m[1] ?? '').toLowerCase(), body: (m[2] ?? '').trim() }));
    body =
      fences.find((f) => f.tag === 'json')?.body ?? fences.find((f) => f.tag === '' && f.body.startsWith('{'))?.body;
  }
  if (body === undefined) {
    const unclosed = (trimmed.match(/```/g) ?? []).length % 2 === 1;
    return { ok: false, reason: `no JSON object found in reply${unclosed ? ' (unclosed ``` fence: reply cut off?)' : ''}` };
  }
  try {
    return { ok: true, value: JSON.parse(body) as unknown };
  } catch (e: unknown) {
    // V8 quotes a stretch of the reply in its message ("…ZEBRA-TITL"… is not valid JSON);
    // the reply may echo the mission, and reasons reach logs: keep only the diagnosis.
    const message = (e instanceof Error ? e.message : String(e)).replace(/, (?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/s, ' (not valid JSON)');
    return { ok: false, reason: `invalid JSON: ${message}` };
  }
}

/**
 * Parses and validates a planner reply against the tool catalog.
 *
 * A step naming a tool outside `tools`, or one in `opts.denied`, is dropped
 * (listed in `dropped`). Every other step must carry a non-empty summary and
 * rationale, and give exactly its tool's params: required ones present and
 * of their declared type, enum values among the allowed ones, no unknown keys.
 *
 * @param tools the catalog steps are checked against (default: the server's).
 * @returns the plan, or a reason that says what was expected and what came.
 */
export function parsePlan(text: string, tools: readonly ToolSpec[] = TOOL_CATALOG, opts: ParseOptions = {}): ParsePlanResult {
  try {
    return parseUnsafe(text, tools, opts.denied ?? NONE_DENIED);
  } catch (e: unknown) {
    // Defensive: a bug here must cost one plan, not the planner loop.
    return { ok: false, reason: `parser error: ${e instanceof Error ? e.message : String(e)}` };
  }
}

const NONE_DENIED: ReadonlySet<string> = new Set();

function parseUnsafe(text: string, tools: readonly ToolSpec[], denied: ReadonlySet<string>): ParsePlanResult {
  if (typeof text !== 'string') return { ok: false, reason: `expected the reply as text, got ${describe(text)}` };
  const extracted = extractJson(text);
  if (!extracted.ok) return extracted;
  const value = extracted.value;
  if (!isPlainObject(value)) return { ok: false, reason: `expected a JSON object, got ${describe(value)}` };

  const envelope = PlanEnvelope.safeParse(value, { reportInput: true });
  if (!envelope.success) return fail(envelope.error.issues.map((i) => formatIssue(i, '')));

  const problems: string[] = [];
  const steps: ParsedStep[] = [];
  const dropped: DroppedStep[] = [];
  envelope.data.steps.forEach((raw, index) => {
    const result = parseStep(raw, index + 1, tools, denied);
    if (result.ok) steps.push(result.step);
    else if ('dropped' in result) dropped.push(result.dropped);
    else problems.push(...result.problems);
  });
  if (problems.length > 0) return fail(problems);
  const plan = { summary: envelope.data.summary, steps };
  return dropped.length > 0 ? { ok: true, plan, dropped } : { ok: true, plan };
}

type StepResult = { ok: true; step: ParsedStep } | { ok: false; dropped: DroppedStep } | { ok: false; problems: string[] };

function parseStep(raw: unknown, n: number, tools: readonly ToolSpec[], denied: ReadonlySet<string>): StepResult {
  const where = `step ${n}`;
  if (!isPlainObject(raw)) return { ok: false, problems: [`${where}: expected an object, got ${describe(raw)}`] };
  const { toolName, params } = raw;
  const tool = typeof toolName === 'string' ? toolByName(toolName, tools) : undefined;
  // Whatever else is wrong with such a step does not matter: it is never written.
  if (typeof toolName === 'string' && !tool) return { ok: false, dropped: { step: n, toolName, why: 'unknown' } };
  if (tool && denied.has(tool.name)) return { ok: false, dropped: { step: n, toolName: tool.name, why: 'denied' } };
  // Shape and params are checked independently so one reply reports
  // every problem of the step, not just the first.
  const shape = StepShape.safeParse(raw, { reportInput: true });
  const problems = shape.success ? [] : shape.error.issues.map((i) => formatIssue(i, where));
  let clean: Record<string, ParamValue> = {};
  if (tool && isPlainObject(params)) {
    const checked = paramsSchema(tool).safeParse(withoutEmptyOptionals(params, tool), { reportInput: true });
    if (checked.success) clean = onlyParamValues(checked.data);
    else problems.push(...checked.error.issues.map((i) => formatIssue(i, `${where} (${tool.name})`, tool)));
  }

  if (!shape.success || !tool || problems.length > 0) return { ok: false, problems };
  const { summary, rationale } = shape.data;
  return { ok: true, step: { summary, toolName: tool.name, params: clean, rationale } };
}

function onlyParamValues(data: Record<string, unknown>): Record<string, ParamValue> {
  const clean: Record<string, ParamValue> = {};
  for (const [key, v] of Object.entries(data)) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') clean[key] = v;
  }
  return clean;
}

/**
 * Models often write `null` or `""` for an optional parameter they mean to
 * leave out; treating that as "absent" saves a whole re-plan for nothing.
 */
function withoutEmptyOptionals(params: Record<string, unknown>, tool: ToolSpec): Record<string, unknown> {
  const optional = new Set(tool.parameters.filter((p) => !p.required).map((p) => p.name));
  return Object.fromEntries(
    Object.entries(params).filter(
      ([k, v]) => !(optional.has(k) && (v === null || (typeof v === 'string' && v.trim() === ''))),
    ),
  );
}

// One schema per tool, built on first use: building a zod object schema
// (and the fast path zod compiles on its first parse) cost 4× the parse
// itself and was the largest CPU item of a planned mission in our code.
const PARAMS_SCHEMAS = new WeakMap<ToolSpec, z.ZodType<Record<string, unknown>>>();

function paramsSchema(tool: ToolSpec): z.ZodType<Record<string, unknown>> {
  let schema = PARAMS_SCHEMAS.get(tool);
  if (!schema) {
    const shape: Record<string, z.ZodType> = {};
    for (const p of tool.parameters) shape[p.name] = p.required ? paramValueSchema(p) : paramValueSchema(p).optional();
    schema = z.strictObject(shape);
    PARAMS_SCHEMAS.set(tool, schema);
  }
  return schema;
}

function paramValueSchema(p: ToolParam): z.ZodType {
  switch (p.type) {
    case 'string': {
      const [first, ...rest] = p.enum ?? [];
      return first === undefined ? nonEmpty : z.enum([first, ...rest]);
    }
    case 'number':
      return z.number();
    case 'boolean':
      return z.boolean();
  }
}

function formatIssue(issue: z.core.$ZodIssue, where: string, tool?: ToolSpec): string {
  const field = issue.path.map(String).join('.');
  const at = [where, field].filter((s) => s !== '').join(': ') || 'plan';
  const got = describe(issue.input);
  if (where.startsWith('step') && issue.path[0] === 'rationale' && !tool) {
    return `missing rationale in ${where} (expected a non-empty string, got ${got})`;
  }
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return `${at}: missing (expected ${expectedName(issue.expected, tool)})`;
      return `${at}: expected ${expectedName(issue.expected, tool)}, got ${got}`;
    case 'too_small':
      return `${at}: expected a non-empty string, got ${got}`;
    case 'too_big':
      return `${at}: expected at most ${String(issue.maximum)} steps, got ${Array.isArray(issue.input) ? issue.input.length : got}`;
    case 'invalid_value':
      return `${at}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${got}`;
    case 'unrecognized_keys': {
      const keys = issue.keys.map((k) => JSON.stringify(k)).join(', ');
      if (tool) {
        const allowed = tool.parameters.map((p) => p.name).join(', ') || 'none';
        return `${at}: unknown param ${keys} (expected: ${allowed})`;
      }
      return `${at}: unexpected key ${keys}`;
    }
    default:
      return `${at}: ${issue.message}`;
  }
}

function expectedName(expected: string, tool?: ToolSpec): string {
  if (expected === 'record') return 'an object';
  if (expected === 'array') return 'an array';
  return tool || expected !== 'string' ? `a ${expected}` : 'a non-empty string';
}

function fail(problems: string[]): ParsePlanResult {
  const shown = problems.slice(0, MAX_REASONS);
  const more = problems.length - shown.length;
  return { ok: false, reason: shown.join('; ') + (more > 0 ? `; and ${more} more` : '') };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A short, log-safe description of what the model actually sent. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}
