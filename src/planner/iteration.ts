/**
 * Turning a parsed plan (or a failure) into a MissionIteration, and merging
 * iterations by id. Pure: no clock, no I/O.
 */
import type { MissionIteration } from '../projection/mission.js';
import type { ParsedPlan } from './parse.js';

export function planIteration(iterationId: string, plan: ParsedPlan, startedAt: string, finishedAt: string): MissionIteration {
  return {
    id: iterationId,
    startedAt,
    finishedAt,
    summary: plan.summary,
    // An empty plan is a valid no-op run: nothing to review.
    overallStatus: plan.steps.length === 0 ? 'approved' : 'awaiting-review',
    source: 'server',
    plan: plan.steps.map((step, i) => ({
      id: `${iterationId}-${i}`,
      summary: step.summary,
      intent: { kind: 'toolCall', toolName: step.toolName, params: step.params },
      rationale: step.rationale,
      status: 'planned',
    })),
  };
}

export function failedIteration(iterationId: string, reason: string, startedAt: string, finishedAt: string): MissionIteration {
  return {
    id: iterationId,
    startedAt,
    finishedAt,
    summary: `The server could not plan this run: ${reason}`,
    overallStatus: 'failed',
    source: 'server',
    plan: [],
  };
}

/**
 * Merges `extra` into `base` by iteration id, keeping base's order and
 * appending new ones (newest last). Never yields two iterations with one id;
 * an id present in both keeps base's copy (the device may have moved it on).
 */
export function mergeIterations(base: unknown, extra: MissionIteration[]): MissionIteration[] {
  const out: MissionIteration[] = [];
  const seen = new Set<string>();
  for (const it of Array.isArray(base) ? base : []) {
    if (typeof it !== 'object' || it === null) continue;
    const id = (it as { id?: unknown }).id;
    if (typeof id !== 'string' || seen.has(id)) continue;
    seen.add(id);
    out.push(it as MissionIteration);
  }
  for (const it of extra) {
    if (seen.has(it.id)) continue;
    seen.add(it.id);
    out.push(it);
  }
  return out;
}

export function hasIteration(iterations: unknown, id: string): boolean {
  return Array.isArray(iterations) && iterations.some((it) => typeof it === 'object' && it !== null && (it as { id?: unknown }).id === id);
}

/**
 * A kept plan (a reply paid for by an earlier attempt) without the steps the
 * agent's policy denies now: the policy may have changed since the reply was
 * parsed (a pause and resume in between, say), and the webapp runs every
 * step of a server iteration on arrival. Returns the dropped steps' tools.
 */
export function withoutDeniedSteps(iteration: MissionIteration, denied: ReadonlySet<string>): { iteration: MissionIteration; dropped: string[] } {
  const dropped: string[] = [];
  const plan = iteration.plan.filter((s) => {
    if (s.intent.kind !== 'toolCall' || !denied.has(s.intent.toolName)) return true;
    dropped.push(s.intent.toolName);
    return false;
  });
  return dropped.length === 0 ? { iteration, dropped } : { iteration: { ...iteration, plan }, dropped };
}
