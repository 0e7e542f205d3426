/**
 * Test helpers for the occurrence/nudge integration tests: a coordinator on
 * a test database with a config built by `loadConfig`, a real `ws` client
 * that authenticates and records every frame, and writers that put missions
 * into sync_changes the way mana-sync would.
 */
import { pino } from 'pino';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config.js';
import { startCoordinator, type Coordinator } from '../../src/coordinator.js';
import type { Sql } from '../../src/db/pool.js';
import type { FallbackPlanner } from '../../src/nudge/router.js';
import type { ServerFrame } from '../../src/nudge/protocol.js';
import type { Occurrence } from '../../src/schedule/occurrences.js';

export interface TestCoordinator extends Coordinator {
  wsUrl: string;
  /** A dev-default HS256 token for the user, from POST /dev/token. */
  token(userId: string): Promise<string>;
}

/** Starts a coordinator on `sql`; env entries override the test defaults. */
export async function startTestCoordinator(
  sql: Sql,
  env: Record<string, string> = {},
  opts: { fallback?: FallbackPlanner } = {},
): Promise<TestCoordinator> {
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    TICK_INTERVAL_MS: '100',
    ...env,
  });
  const log = pino({ level: process.env['TEST_LOG'] ?? 'silent' });
  const c = await startCoordinator({ config, sql, log, fallback: opts.fallback });
  return {
    ...c,
    wsUrl: `${c.url.replace(/^http/, 'ws')}/v1/ws`,
    async token(userId) {
      const res = await fetch(`${c.url}/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId }) });
      if (res.status !== 200) throw new Error(`POST /dev/token answered ${res.status}`);
      return ((await res.json()) as { token: string }).token;
    },
  };
}

/** A fallback planner that records what it was handed and never finishes it. */
export interface FallbackSpy extends FallbackPlanner {
  calls: Occurrence[];
  /** Date.now() at each call, parallel to `calls`. */
  times: number[];
}

export function createFallbackSpy(): FallbackSpy {
  const calls: Occurrence[] = [];
  const times: number[] = [];
  return {
    enabled: true,
    calls,
    times,
    plan(occ) {
      calls.push(occ);
      times.push(Date.now());
    },
  };
}

export interface WsClient {
  ws: WebSocket;
  frames: ServerFrame[];
  /** Date.now() at each frame's arrival, parallel to `frames`. */
  arrivals: number[];
  /** Frames of type mission-due received so far. */
  nudges(): Extract<ServerFrame, { type: 'mission-due' }>[];
  send(frame: unknown): void;
  /** Resolves with the first frame (already received or later) that matches. */
  next<T extends ServerFrame['type']>(type: T, match?: (f: Extract<ServerFrame, { type: T }>) => boolean, timeoutMs?: number): Promise<Extract<ServerFrame, { type: T }>>;
  closed: Promise<{ code: number; reason: string }>;
  close(): Promise<void>;
}

/** Opens a socket without authenticating (tests of the auth handshake). */
export async function openSocket(url: string): Promise<WsClient> {
  const ws = new WebSocket(url);
  const frames: ServerFrame[] = [];
  const arrivals: number[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (raw) => {
    arrivals.push(Date.now());
    frames.push(JSON.parse(raw.toString()) as ServerFrame);
    for (const w of [...waiters]) w();
  });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const w of [...waiters]) w();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const client: WsClient = {
    ws,
    frames,
    arrivals,
    nudges: () => frames.filter((f): f is Extract<ServerFrame, { type: 'mission-due' }> => f.type === 'mission-due'),
    send: (frame) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)),
    next(type, match, timeoutMs = 5000) {
      type F = Extract<ServerFrame, { type: typeof type }>;
      const find = () => frames.find((f): f is F => f.type === type && (!match || match(f as F)));
      const found = find();
      if (found) return Promise.resolve(found);
      return new Promise<F>((resolve, reject) => {
        const check = () => {
          const f = find();
          if (f) {
            done();
            resolve(f);
          } else if (ws.readyState === ws.CLOSED) {
            done();
            reject(new Error(`socket closed while waiting for a ${type} frame; got ${JSON.stringify(frames)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${type} frame within ${timeoutMs} ms; got ${JSON.stringify(frames)}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
      }) as never;
    },
    closed,
    async close() {
      if (ws.readyState !== ws.CLOSED) {
        ws.close();
        await closed;
      }
    },
  };
  return client;
}

/** Opens a socket and authenticates it; resolves after auth-ok. */
export async function connectClient(url: string, opts: { token: string; deviceId: string }): Promise<WsClient> {
  const client = await openSocket(url);
  client.send({ type: 'auth', token: opts.token, deviceId: opts.deviceId });
  await client.next('auth-ok');
  return client;
}

export interface MissionRow {
  userId: string;
  missionId: string;
  /** ISO instant, or null for no next run. */
  nextRunAt: string | null;
  state?: 'active' | 'paused' | 'done' | 'archived';
  iterations?: { id: string; [k: string]: unknown }[];
}

/** Inserts missions as mana-sync rows (op insert, whole record), all in one statement. */
export async function insertMissions(sql: Sql, missions: MissionRow[]): Promise<void> {
  const rows = missions.map((m) => ({
    u: m.userId,
    r: m.missionId,
    d: {
      id: m.missionId,
      title: `mission ${m.missionId}`,
      cadence: { kind: 'manual' },
      state: m.state ?? 'active',
      iterations: m.iterations ?? [],
      ...(m.nextRunAt === null ? {} : { nextRunAt: m.nextRunAt }),
    },
  }));
  // The test login is a superuser, so sync_changes' RLS does not get in the way.
  await sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, origin)
    SELECT 'ai', 'aiMissions', r, u, 'insert', d, 'test', 'user'
    FROM jsonb_to_recordset(${sql.json(rows as never)}::jsonb) AS x(u text, r text, d jsonb)`;
}

/** Appends an update row with only the given fields, as a device editing the mission would. */
export async function updateMission(sql: Sql, userId: string, missionId: string, data: Record<string, unknown>): Promise<void> {
  await sql`
    INSERT INTO sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, origin)
    VALUES ('ai', 'aiMissions', ${missionId}, ${userId}, 'update', ${sql.json(data as never)}, 'test', 'user')`;
}

export { sleep, waitFor } from './wait.js';

/** An ISO instant ms from now (negative: in the past). */
export const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();

/** The occurrence rows of a user, as the ledger holds them. */
export async function occurrencesOf(sql: Sql, userId: string): Promise<{ iterationId: string; missionId: string; status: string; channel: string | null; claimedBy: string | null; lastError: string | null }[]> {
  return sql`
    SELECT iteration_id::text AS "iterationId", mission_id AS "missionId", status, channel, claimed_by AS "claimedBy", last_error AS "lastError"
    FROM mana_ai.occurrences WHERE user_id = ${userId} ORDER BY created_at, iteration_id`;
}
