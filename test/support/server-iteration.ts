/**
 * What the webapp needs of a server iteration to run it on arrival
 * (docs/contract.md §6), stated as a check: it takes each `planned` step of
 * an iteration with `source: 'server'`, runs its tool call under the AI
 * actor, and writes the step's new status back into the same iteration.
 * So the iteration is an object with a string id and a `plan` array; every
 * planned step is a tool call of a tool the webapp has (our catalog is a
 * subset of its registry), with object params; statuses are the webapp's.
 */
import { toolByName } from '../../src/planner/tools.js';

const STEP_STATUSES = new Set(['planned', 'staged', 'approved', 'rejected', 'skipped', 'failed']);
const ITERATION_STATUSES = new Set(['running', 'awaiting-review', 'approved', 'rejected', 'failed']);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Problems the webapp would have running this iteration (empty: it runs every planned step). */
export function serverIterationProblems(it: unknown): string[] {
  if (!isObject(it)) return ['iteration: expected an object'];
  const problems: string[] = [];
  if (typeof it['id'] !== 'string' || it['id'] === '') problems.push('id: expected a non-empty string');
  if (it['source'] !== 'server') problems.push(`source: expected 'server', got ${JSON.stringify(it['source'])}`);
  if (typeof it['startedAt'] !== 'string') problems.push('startedAt: expected a string');
  if (!ITERATION_STATUSES.has(it['overallStatus'] as string)) problems.push(`overallStatus: ${JSON.stringify(it['overallStatus'])}`);
  if (!Array.isArray(it['plan'])) return [...problems, 'plan: expected an array'];
  it['plan'].forEach((step: unknown, i: number) => {
    if (!isObject(step)) return problems.push(`plan[${i}]: expected an object`);
    if (step['id'] !== `${String(it['id'])}-${i}`) problems.push(`plan[${i}].id: expected ${String(it['id'])}-${i}`);
    if (!STEP_STATUSES.has(step['status'] as string)) problems.push(`plan[${i}].status: ${JSON.stringify(step['status'])}`);
    if (step['status'] !== 'planned') return;
    const intent = step['intent'];
    if (!isObject(intent) || intent['kind'] !== 'toolCall') return problems.push(`plan[${i}].intent: expected a tool call`);
    if (typeof intent['toolName'] !== 'string' || !toolByName(intent['toolName'])) problems.push(`plan[${i}].intent.toolName: no such tool ${JSON.stringify(intent['toolName'])}`);
    if (!isObject(intent['params'])) problems.push(`plan[${i}].intent.params: expected an object`);
  });
  return problems;
}
