/**
 * THE DEMO'S STAND-IN FOR THE WEBAPP'S PLANNER. It is not the real planner
 * and calls no LLM: it makes 2–3 canned steps from the mission title, so the
 * demo shows the device-side loop (claim → plan → write back → complete)
 * without a model. The write-back is what the webapp does: append the
 * iteration (merged by id), move `nextRunAt` by the cadence, re-read to check.
 */
import type { Cadence, Mission, MissionIteration, PlanStep } from '../../../src/projection/mission.js';
import type { DevApi } from './dev-api.js';
import { addProposals, type Proposal } from './store.js';

/** The demo steps for a mission title (pure): 2 steps, 3 when the title has 3+ words. */
export function demoSteps(mission: Pick<Mission, 'title' | 'objective'>, iterationId: string): PlanStep[] {
  const title = (typeof mission.title === 'string' && mission.title.trim()) || 'Untitled mission';
  const objective = typeof mission.objective === 'string' && !mission.objective.startsWith('enc:') ? mission.objective : title;
  const steps: PlanStep[] = [
    {
      id: `${iterationId}-0`,
      summary: `Start on "${title}"`,
      intent: { kind: 'toolCall', toolName: 'create_task', params: { title: `First step: ${title}`, priority: 'medium' } },
      status: 'staged',
      rationale: 'Demo planner: every mission starts with one concrete task.',
    },
    {
      id: `${iterationId}-1`,
      summary: `Note what "${title}" should achieve`,
      intent: { kind: 'toolCall', toolName: 'create_note', params: { title: `Notes: ${title}`, body: objective } },
      status: 'staged',
      rationale: 'Demo planner: keeps the objective next to the work.',
    },
  ];
  if (title.split(/\s+/).length >= 3) {
    steps.push({
      id: `${iterationId}-2`,
      summary: `Block 30 minutes for "${title}"`,
      intent: { kind: 'toolCall', toolName: 'create_event', params: { title } },
      status: 'staged',
      rationale: 'Demo planner: a longer title earns a time slot.',
    });
  }
  for (const step of steps) step.proposalId = step.id;
  return steps;
}

/**
 * The next due time after planning at `now`, as the webapp's runner moves it
 * (pure): interval → now + everyMinutes; daily/weekly → the next local slot;
 * manual and cron → undefined (no automatic next run in the webapp today).
 */
export function nextRunAfter(cadence: Cadence | undefined, now: Date): string | undefined {
  if (!cadence) return undefined;
  switch (cadence.kind) {
    case 'interval':
      return Number.isFinite(cadence.everyMinutes) && cadence.everyMinutes > 0
        ? new Date(now.getTime() + cadence.everyMinutes * 60_000).toISOString()
        : undefined;
    case 'daily': {
      const next = new Date(now);
      next.setHours(cadence.atHour, cadence.atMinute, 0, 0);
      if (next <= now) next.setDate(next.getDate() + 1);
      return next.toISOString();
    }
    case 'weekly': {
      const next = new Date(now);
      next.setHours(cadence.atHour, 0, 0, 0);
      next.setDate(next.getDate() + ((cadence.dayOfWeek - next.getDay() + 7) % 7));
      if (next <= now) next.setDate(next.getDate() + 7);
      return next.toISOString();
    }
    default:
      return undefined;
  }
}

/** `iterations` with `iteration` in place of any same-id entry, appended last (pure). */
export function mergeIteration(existing: unknown, iteration: MissionIteration): MissionIteration[] {
  const list = Array.isArray(existing)
    ? (existing.filter((it) => typeof it === 'object' && it !== null && typeof (it as { id?: unknown }).id === 'string') as MissionIteration[])
    : [];
  return [...list.filter((it) => it.id !== iteration.id), iteration];
}

/** The local proposals for an iteration's steps. */
export function proposalsFor(mission: Pick<Mission, 'id' | 'title'>, iteration: MissionIteration, source: 'browser' | 'server'): Proposal[] {
  const createdAt = iteration.finishedAt ?? iteration.startedAt ?? new Date().toISOString();
  const plan = Array.isArray(iteration.plan) ? iteration.plan : [];
  return plan.map((step, index) => ({
    id: typeof step.id === 'string' ? step.id : `${iteration.id}-${index}`,
    missionId: mission.id,
    missionTitle: typeof mission.title === 'string' ? mission.title : mission.id,
    iterationId: iteration.id,
    summary: typeof step.summary === 'string' ? step.summary : '(no summary)',
    ...(typeof step.rationale === 'string' ? { rationale: step.rationale } : {}),
    ...(step.intent?.kind === 'toolCall' ? { toolName: step.intent.toolName, params: step.intent.params } : {}),
    ...(step.intent?.kind === 'note' ? { toolName: 'note', params: { body: step.intent.body } } : {}),
    status: 'pending',
    source,
    createdAt,
  }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Plans `iterationId` of `missionId` the demo way and writes it back through
 * the dev sync endpoint; resolves to the number of steps.
 */
export async function planWithDemoPlanner(dev: DevApi, missionId: string, iterationId: string): Promise<{ steps: number }> {
  const mission = await dev.mission(missionId);
  if (!mission) throw new Error(`mission ${missionId} not found in /dev/sync/missions`);
  const startedAt = new Date();
  const plan = demoSteps(mission, iterationId);
  const iteration: MissionIteration = {
    id: iterationId,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    plan,
    summary: `Demo plan for "${mission.title ?? missionId}" (${plan.length} steps)`,
    overallStatus: 'awaiting-review',
    source: 'browser',
  };

  const write = async (base: Mission) => {
    const at = new Date().toISOString();
    const next = nextRunAfter(base.cadence, new Date());
    const data: Record<string, unknown> = { iterations: mergeIteration(base.iterations, iteration), updatedAt: at };
    // Each field's stamp in field_meta, as mana-sync stores a device's update (an update without one is ignored).
    const fieldMeta: Record<string, string> = { iterations: at, updatedAt: at };
    if (next) {
      data['nextRunAt'] = next;
      fieldMeta['nextRunAt'] = at;
    }
    await dev.postChanges([{ appId: 'ai', tableName: 'aiMissions', recordId: missionId, op: 'update', data, fieldMeta }]);
  };
  await write(mission);

  // `iterations` is one LWW field: a concurrent writer's array can drop ours.
  // Re-read and merge again a few times; a projection that lags only costs an
  // identical rewrite.
  for (let i = 0; i < 3; i++) {
    await sleep(300 * (i + 1));
    const after = await dev.mission(missionId).catch(() => undefined);
    if (!after) break;
    const its = Array.isArray(after.iterations) ? after.iterations : [];
    if (its.some((it) => it?.id === iterationId)) break;
    await write(after);
  }

  await addProposals(proposalsFor(mission, iteration, 'browser'));
  return { steps: plan.length };
}
