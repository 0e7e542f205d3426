/**
 * A fake device in the test process: a real `ws` socket to one coordinator
 * instance that does what the web client does with a nudge — dedup by
 * iterationId, claim, "plan locally", write the iteration to the change log
 * (POST /dev/sync/changes, mana-sync's shape) and complete. When its socket
 * drops it reconnects with backoff to the next instance that answers and
 * re-sends claims whose answer it never got (a re-claim by the holder renews
 * its lease). HTTP calls move to another instance when one stops answering.
 *
 * mana-sync dedups a device's pushes by change id; the dev endpoint does
 * not, so when a write's answer is lost the device asks `alreadyWritten`
 * (the test reads the log) before writing again, as the real sync client
 * would get its change acknowledged on the retry.
 */
import WebSocket from 'ws';
import { sleep, between } from './ledger.js';

interface MissionDue {
  type: 'mission-due';
  missionId: string;
  iterationId: string;
  dueAt: string;
}

export interface DeviceStats {
  nudges: number;
  /** Iteration ids this device was granted. */
  granted: string[];
  refused: Record<string, number>;
  /** Iteration ids whose iteration this device wrote and completed. */
  completed: string[];
  /**
   * Completes refused because the lease ran out first (409 held by the
   * server, which then finds the device's iteration in the log and writes
   * none). A protocol outcome of a slow device, not an error.
   */
  lateCompletes: number;
  reconnects: number;
  httpRetries: number;
  /** Why HTTP calls were retried (first 50). */
  retryReasons: string[];
  /** Per granted iteration: ms from grant to the write's answer and to complete's answer. */
  timings: { id: string; writeMs: number; completeMs: number }[];
  errors: string[];
}

export interface DeviceOptions {
  userId: string;
  deviceId: string;
  token: string;
  /** Base URLs of the instances; read on every (re)connect and HTTP retry. */
  instances: () => string[];
  /** Index in instances() to connect to first. */
  home: number;
  /** The time this device takes to plan locally. */
  planMs?: () => number;
  alreadyWritten: (userId: string, missionId: string, iterationId: string) => Promise<boolean>;
}

export interface FakeDevice {
  opts: DeviceOptions;
  stats: DeviceStats;
  /** Resolves after the first auth-ok. */
  ready: Promise<void>;
  /** The instance the socket is on now (undefined while reconnecting). */
  current(): string | undefined;
  /** Resolves when no claimed work is in progress. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

const wsUrlOf = (base: string) => `${base.replace(/^http/, 'ws')}/v1/ws`;

export function createFakeDevice(opts: DeviceOptions): FakeDevice {
  const stats: DeviceStats = { nudges: 0, granted: [], refused: {}, completed: [], lateCompletes: 0, reconnects: 0, httpRetries: 0, retryReasons: [], timings: [], errors: [] };
  const seen = new Map<string, MissionDue>();
  /** Claims sent whose claim-result has not arrived (re-sent after a reconnect). */
  const awaiting = new Set<string>();
  const working = new Set<Promise<void>>();
  let ws: WebSocket | undefined;
  let currentUrl: string | undefined;
  let closed = false;
  let index = opts.home;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (markReady = r));

  function sendClaim(iterationId: string): void {
    awaiting.add(iterationId);
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'claim', iterationId }));
  }

  async function http(path: string, body: unknown): Promise<{ status: number; text: string; base: string }> {
    // Prefer the instance the socket is on; move on when one does not answer.
    for (let attempt = 0; ; attempt++) {
      const list = opts.instances();
      if (list.length === 0) throw new Error('no instance left');
      const base = attempt === 0 && currentUrl && list.includes(currentUrl) ? currentUrl : list[(index + attempt) % list.length]!;
      try {
        const res = await fetch(`${base}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.token}` },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
        const text = await res.text();
        if (res.status === 429 || res.status >= 500) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
        return { status: res.status, text, base };
      } catch (err: unknown) {
        stats.httpRetries++;
        if (stats.retryReasons.length < 50) stats.retryReasons.push(`${base}${path}: ${(err as Error).message}`);
        if (attempt >= 20 || closed) throw err;
        await sleep(between(100, 400));
        if (path.endsWith('/dev/sync/changes')) {
          const [change] = (body as { changes: { recordId: string; data: { iterations: { id: string }[] } }[] }).changes;
          // The answer was lost, not necessarily the write: ask until the log answers, never write blind.
          for (let check = 0; ; check++) {
            try {
              if (await opts.alreadyWritten(opts.userId, change!.recordId, change!.data.iterations[0]!.id)) return { status: 200, text: '{"written":1}', base };
              break;
            } catch (checkErr: unknown) {
              if (check >= 20) throw checkErr;
              await sleep(500);
            }
          }
        }
      }
    }
  }

  async function planAndComplete(n: MissionDue): Promise<void> {
    const grantedAt = Date.now();
    const startedAt = new Date().toISOString();
    await sleep(opts.planMs?.() ?? between(20, 150));
    const at = new Date().toISOString();
    const iteration = {
      id: n.iterationId,
      startedAt,
      finishedAt: at,
      summary: `Planned on ${opts.deviceId}`,
      overallStatus: 'awaiting-review',
      source: 'device',
      plan: [],
    };
    // Tomorrow 09:00 UTC after the due instant: the mission's daily cadence moved on.
    const next = new Date(Date.parse(n.dueAt));
    next.setUTCDate(next.getUTCDate() + 1);
    next.setUTCHours(9, 0, 0, 0);
    const nextRunAt = new Date(Math.max(next.getTime(), Date.now() + 3_600_000)).toISOString();
    await http('/dev/sync/changes', {
      changes: [
        {
          appId: 'ai',
          tableName: 'aiMissions',
          recordId: n.missionId,
          op: 'update',
          data: { iterations: [iteration], nextRunAt },
          fieldMeta: { iterations: at, nextRunAt: at },
        },
      ],
    });
    const writeMs = Date.now() - grantedAt;
    const done = await http(`/v1/occurrences/${n.iterationId}/complete`, { deviceId: opts.deviceId });
    stats.timings.push({ id: n.iterationId, writeMs, completeMs: Date.now() - grantedAt });
    // 410: the projection saw the iteration and settled the occurrence first — also done.
    if (done.status === 409 && done.text.includes('"held"')) stats.lateCompletes++;
    else if (done.status !== 200 && done.status !== 410) stats.errors.push(`complete ${n.iterationId}: ${done.status} ${done.text.slice(0, 200)}`);
    stats.completed.push(n.iterationId);
  }

  function onFrame(raw: WebSocket.RawData): void {
    let f: { type: string; [k: string]: unknown };
    try {
      f = JSON.parse(raw.toString()) as typeof f;
    } catch {
      stats.errors.push(`unparsable frame: ${raw.toString().slice(0, 100)}`);
      return;
    }
    if (f.type === 'auth-ok') {
      markReady();
      // Claims whose answer was lost with the previous socket.
      for (const id of awaiting) sendClaim(id);
    } else if (f.type === 'mission-due') {
      const n = f as unknown as MissionDue;
      stats.nudges++;
      if (seen.has(n.iterationId)) return;
      seen.set(n.iterationId, n);
      sendClaim(n.iterationId);
    } else if (f.type === 'claim-result') {
      const id = f['iterationId'] as string;
      if (!awaiting.delete(id)) return;
      if (f['granted'] === true) {
        stats.granted.push(id);
        const p = planAndComplete(seen.get(id)!).catch((err: unknown) => {
          stats.errors.push(`${id}: ${(err as Error).message}`);
        });
        working.add(p);
        void p.finally(() => working.delete(p));
      } else {
        const reason = String(f['reason'] ?? '?').split(';')[0]!;
        stats.refused[reason] = (stats.refused[reason] ?? 0) + 1;
        // Out of claim budget: ask again shortly (the server never sends it again by itself).
        if (reason === 'rate-limited') setTimeout(() => sendClaim(id), 1000).unref();
      }
    } else if (f.type === 'error') {
      stats.errors.push(`error frame: ${String(f['code'])} ${String(f['message'])}`);
    }
  }

  function connect(): void {
    if (closed) return;
    const list = opts.instances();
    if (list.length === 0) {
      setTimeout(connect, 500).unref();
      return;
    }
    const base = list[index % list.length]!;
    const socket = new WebSocket(wsUrlOf(base));
    ws = socket;
    socket.on('open', () => {
      currentUrl = base;
      socket.send(JSON.stringify({ type: 'auth', token: opts.token, deviceId: opts.deviceId }));
    });
    socket.on('message', onFrame);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (ws === socket) {
        ws = undefined;
        currentUrl = undefined;
      }
      if (closed) return;
      stats.reconnects++;
      index++;
      setTimeout(connect, between(200, 800)).unref();
    });
  }

  connect();
  return {
    opts,
    stats,
    ready,
    current: () => currentUrl,
    async idle() {
      while (working.size > 0) await Promise.allSettled([...working]);
    },
    async close() {
      closed = true;
      await Promise.allSettled([...working]);
      const s = ws;
      if (s && s.readyState !== WebSocket.CLOSED) {
        await new Promise<void>((r) => {
          s.once('close', () => r());
          s.close();
          setTimeout(() => {
            s.terminate();
            r();
          }, 1000).unref();
        });
      }
    },
  };
}
