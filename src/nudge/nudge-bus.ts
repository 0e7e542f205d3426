/**
 * Carries a nudge decided on one instance to the instance holding the
 * user's socket, over Postgres LISTEN/NOTIFY. A latency hint, not a
 * transport of record: the ledger stays authoritative and sockets get their
 * pending nudges again on (re)connect. Nudges are batched into as few
 * NOTIFYs as fit the 8 KB payload limit, since notifying commits serialize.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { MissionDue } from './protocol.js';

export const NUDGE_CHANNEL = 'mana_ai_nudge';
const MAX_PAYLOAD = 7000;

export interface Nudge {
  userId: string;
  frame: MissionDue;
}

interface Envelope {
  from: string;
  /** `attempt` last, optional: an instance without it sends four-element entries. */
  nudges: [userId: string, missionId: string, iterationId: string, dueAt: string, attempt?: number][];
}

export interface NudgeBus {
  start(): Promise<void>;
  publish(nudges: Nudge[]): Promise<void>;
  stop(): Promise<void>;
}

export function createNudgeBus(deps: { sql: Sql; instanceId: string; log: Logger; onNudge: (n: Nudge) => void }): NudgeBus {
  const { sql, instanceId, log } = deps;
  let unlisten: (() => Promise<void>) | undefined;

  function receive(payload: string): void {
    let env: Envelope;
    try {
      env = JSON.parse(payload) as Envelope;
    } catch {
      log.warn('ignoring an unparsable nudge notification');
      return;
    }
    // Our own nudges were delivered locally already.
    if (env.from === instanceId || !Array.isArray(env.nudges)) return;
    for (const [userId, missionId, iterationId, dueAt, attempt] of env.nudges) {
      const frame: MissionDue = { type: 'mission-due', missionId, iterationId, dueAt };
      if (typeof attempt === 'number') frame.attempt = attempt;
      deps.onNudge({ userId, frame });
    }
  }

  return {
    async start() {
      const listener = await sql.listen(NUDGE_CHANNEL, receive, () => log.debug('listening for nudges'));
      unlisten = listener.unlisten;
    },
    async publish(nudges) {
      const payloads: string[] = [];
      let batch: Envelope['nudges'] = [];
      let size = 0;
      const flush = () => {
        if (batch.length === 0) return;
        payloads.push(JSON.stringify({ from: instanceId, nudges: batch } satisfies Envelope));
        batch = [];
        size = 0;
      };
      for (const n of nudges) {
        const f = n.frame;
        const entry: Envelope['nudges'][number] = f.attempt === undefined
          ? [n.userId, f.missionId, f.iterationId, f.dueAt]
          : [n.userId, f.missionId, f.iterationId, f.dueAt, f.attempt];
        const len = Buffer.byteLength(JSON.stringify(entry)) + 1;
        if (size + len > MAX_PAYLOAD) flush();
        batch.push(entry);
        size += len;
      }
      flush();
      if (payloads.length === 0) return;
      // Every payload in one statement (one transaction, one round trip): 10,000
      // nudges are ~150 payloads, which one NOTIFY per round trip made ~150 trips.
      await sql`SELECT pg_notify(${NUDGE_CHANNEL}, p) FROM unnest(${payloads}::text[]) AS p`;
    },
    async stop() {
      await unlisten?.();
      unlisten = undefined;
    },
  };
}
