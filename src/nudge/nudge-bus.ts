/**
 * Carries a nudge decided on one instance to the instance holding the
 * user's socket, over Postgres LISTEN/NOTIFY; and, the same way, the news
 * that the server wrote to a mission (`mission-changed`). A latency hint,
 * not a transport of record: the ledger stays authoritative and sockets get
 * their pending nudges again on (re)connect, and a device pulls missions
 * on its own anyway. Entries are batched into as few NOTIFYs as fit the
 * 8 KB payload limit, since notifying commits serialize.
 */
import type { Sql } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { MissionChanged, MissionDue } from './protocol.js';

export const NUDGE_CHANNEL = 'mana_ai_nudge';
const MAX_PAYLOAD = 7000;

export interface Nudge {
  userId: string;
  frame: MissionDue;
}

/** The server wrote to a mission of the user (a plan, a failed iteration, a repair). */
export interface MissionChange {
  userId: string;
  frame: MissionChanged;
}

interface Envelope {
  from: string;
  /** `attempt` last, optional: an instance without it sends four-element entries. */
  nudges?: [userId: string, missionId: string, iterationId: string, dueAt: string, attempt?: number][];
  changed?: [userId: string, missionId: string, iterationId: string | null][];
}

export interface NudgeBus {
  start(): Promise<void>;
  publish(nudges: Nudge[]): Promise<void>;
  publishChanges(changes: MissionChange[]): Promise<void>;
  stop(): Promise<void>;
}

export function createNudgeBus(deps: {
  sql: Sql;
  instanceId: string;
  log: Logger;
  onNudge: (n: Nudge) => void;
  onMissionChanged?: (c: MissionChange) => void;
}): NudgeBus {
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
    // Our own were delivered locally already.
    if (env.from === instanceId) return;
    for (const [userId, missionId, iterationId, dueAt, attempt] of Array.isArray(env.nudges) ? env.nudges : []) {
      const frame: MissionDue = { type: 'mission-due', missionId, iterationId, dueAt };
      if (typeof attempt === 'number') frame.attempt = attempt;
      deps.onNudge({ userId, frame });
    }
    for (const [userId, missionId, iterationId] of Array.isArray(env.changed) ? env.changed : []) {
      deps.onMissionChanged?.({ userId, frame: { type: 'mission-changed', missionId, ...(iterationId ? { iterationId } : {}) } });
    }
  }

  /** Packs entries into payloads under MAX_PAYLOAD and sends them all in one statement. */
  async function send<E>(entries: E[], envelope: (batch: E[]) => Envelope): Promise<void> {
    const payloads: string[] = [];
    let batch: E[] = [];
    let size = 0;
    const flush = () => {
      if (batch.length === 0) return;
      payloads.push(JSON.stringify(envelope(batch)));
      batch = [];
      size = 0;
    };
    for (const entry of entries) {
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
  }

  return {
    async start() {
      const listener = await sql.listen(NUDGE_CHANNEL, receive, () => log.debug('listening for nudges'));
      unlisten = listener.unlisten;
    },
    async publish(nudges) {
      const entries = nudges.map((n): NonNullable<Envelope['nudges']>[number] => {
        const f = n.frame;
        return f.attempt === undefined ? [n.userId, f.missionId, f.iterationId, f.dueAt] : [n.userId, f.missionId, f.iterationId, f.dueAt, f.attempt];
      });
      await send(entries, (batch) => ({ from: instanceId, nudges: batch }));
    },
    async publishChanges(changes) {
      const entries = changes.map((c): NonNullable<Envelope['changed']>[number] => [c.userId, c.frame.missionId, c.frame.iterationId ?? null]);
      await send(entries, (batch) => ({ from: instanceId, changed: batch }));
    },
    async stop() {
      await unlisten?.();
      unlisten = undefined;
    },
  };
}
