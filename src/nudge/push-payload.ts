/**
 * What a Web Push carries: the nudges of one user due together, in as few
 * messages as fit the payload limit. A message names every occurrence in
 * `missions` and repeats the first at the top level in the single-nudge
 * shape, so a service worker that knows only `mission-due` still plans that
 * one (the others reach the server planner at their deadline). Pure.
 */
import type { MissionDue, PushNudge } from './protocol.js';
import { MAX_PAYLOAD_BYTES, topicForMission } from './push-options.js';

export type MissionRef = Omit<MissionDue, 'type'>;

export interface PushMessage {
  payload: PushNudge;
  /** Replaces a stored message for the same missions rather than stacking another. */
  topic: string;
}

/** Room for the envelope and the repeated first nudge, so every message stays under the limit. */
const BUDGET = MAX_PAYLOAD_BYTES - 400;

const refOf = (f: MissionDue): MissionRef => ({
  missionId: f.missionId,
  iterationId: f.iterationId,
  dueAt: f.dueAt,
  ...(f.attempt === undefined ? {} : { attempt: f.attempt }),
});

/**
 * Groups one user's nudges into push messages: a single nudge keeps the
 * plain `mission-due` payload; several share one message (more than fit in
 * 4 KB are split over as many as needed).
 */
export function pushMessages(frames: MissionDue[]): PushMessage[] {
  if (frames.length === 0) return [];
  if (frames.length === 1) return [{ payload: frames[0]!, topic: topicForMission(frames[0]!.missionId) }];
  const groups: MissionRef[][] = [];
  let group: MissionRef[] = [];
  let size = 0;
  for (const f of frames) {
    const ref = refOf(f);
    const len = Buffer.byteLength(JSON.stringify(ref)) + 1;
    if (group.length > 0 && size + len > BUDGET) {
      groups.push(group);
      group = [];
      size = 0;
    }
    group.push(ref);
    size += len;
  }
  groups.push(group);
  return groups.map((missions) => {
    if (missions.length === 1) return { payload: { type: 'mission-due', ...missions[0]! }, topic: topicForMission(missions[0]!.missionId) };
    return {
      payload: { type: 'mission-due', ...missions[0]!, missions },
      topic: topicForMission(missions.map((m) => m.missionId).sort().join('\n')),
    };
  });
}
