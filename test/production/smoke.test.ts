/**
 * The production smoke suite: the coordinator as a child process with
 * NODE_ENV=production, logging in as `mana_ai` with only the grants of
 * docs/production-grants.sql, against a sync_changes owned by another role
 * with RLS forced; EdDSA tokens from a JWKS with issuer and audience; a stub
 * mana-llm. Runs on every Postgres the suite is pointed at (the embedded 18
 * and Debian's 15 in `npm test`).
 */
import { readLikeManaSync, storedRows } from '../support/mana-sync-read.js';
import type { Sql } from '../../src/db/pool.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { connectClient, type WsClient } from '../support/coordinator.js';
import { waitFor } from '../support/wait.js';
import { killAllChildren, startChild, type ChildCoordinator } from '../reliability/support/child.js';
import { createManaSyncDb, manaSyncCatalog, LOGIN, type ManaSyncDb } from './mana-sync.js';
import { startTestIssuer, type TestIssuer } from './jwks.js';
import { runToExit } from './run-to-exit.js';

const KEY = 'smoke-service-key-0123456789abcdef';
let db: ManaSyncDb;
let issuer: TestIssuer;
let llm: LlmStub;
let catalogBefore: unknown;
const sockets: WsClient[] = [];

function prodEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'production',
    DEV_MODE: '',
    SYNC_DATABASE_URL: db.loginUrl,
    MANA_SERVICE_KEY: KEY,
    JWKS_URL: issuer.jwksUrl,
    JWT_ISSUER: issuer.issuer,
    JWT_AUDIENCE: issuer.audience,
    MANA_LLM_URL: llm.url,
    TICK_INTERVAL_MS: '100',
    WS_CLAIM_TIMEOUT_MS: '5000',
    PLANNER_RETRY_BACKOFF_MS: '500',
    ...overrides,
  };
}

async function insertMission(userId: string, missionId: string, dueInMs: number): Promise<void> {
  const data = { id: missionId, title: `smoke ${missionId}`, objective: 'stay on track', cadence: { kind: 'manual' }, state: 'active', iterations: [], nextRunAt: new Date(Date.now() + dueInMs).toISOString(), createdAt: new Date().toISOString() };
  // As mana-sync writes it: in the user's transaction, under the policy.
  await db.admin.begin(async (tx) => {
    await tx`SELECT set_config('app.current_user_id', ${userId}, true)`;
    await tx`INSERT INTO public.sync_changes (app_id, table_name, record_id, user_id, op, data, client_id, origin)
      VALUES ('ai', 'aiMissions', ${missionId}, ${userId}, 'insert', ${tx.json(data)}, 'webapp', 'user')`;
  });
}

const occurrence = async (userId: string) =>
  (await db.admin<{ status: string; channel: string | null }[]>`SELECT status, channel FROM mana_ai.occurrences WHERE user_id = ${userId}`)[0];

beforeAll(async () => {
  db = await createManaSyncDb(inject('pgAdminUrl'));
  issuer = await startTestIssuer();
  llm = await startLlmStub();
  catalogBefore = await manaSyncCatalog(db.admin);
}, 60_000);

afterAll(async () => {
  for (const s of sockets) await s.close();
  await killAllChildren();
  await llm?.close();
  await issuer?.close();
  await db?.drop();
});

describe('production, as mana_ai with the documented grants only', () => {
  let child: ChildCoordinator;

  beforeAll(async () => {
    child = await startChild({ name: 'prod', env: prodEnv() });
  }, 60_000);

  afterAll(async () => {
    await child?.stop();
  });

  it('is ready, says only its status without the service key, and serves no dev routes', async () => {
    const ready = await fetch(`${child.url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
    expect(await (await fetch(`${child.url}/health`)).json()).toEqual({ status: 'ok' });
    for (const path of ['/dev/token', '/dev/sync/changes']) expect((await fetch(`${child.url}${path}`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${child.url}/demo`)).status).toBe(404);
  });

  it('a socket nudge is claimed and completed with an EdDSA token from the JWKS', async () => {
    const token = await issuer.token('alice');
    const ws = await connectClient(child.wsUrl, { token, deviceId: 'laptop' });
    sockets.push(ws);
    await insertMission('alice', 'alice-m1', 300);
    const nudge = await ws.next('mission-due', (f) => f.missionId === 'alice-m1', 15_000);
    ws.send({ type: 'claim', iterationId: nudge.iterationId });
    expect(await ws.next('claim-result', (f) => f.iterationId === nudge.iterationId)).toMatchObject({ granted: true });
    const done = await fetch(`${child.url}/v1/occurrences/${nudge.iterationId}/complete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ deviceId: 'laptop' }),
    });
    expect(done.status).toBe(200);
    expect(await occurrence('alice')).toEqual({ status: 'completed', channel: 'ws' });
  });

  it('refuses a token with the wrong audience or issuer', async () => {
    const list = (token: string) => fetch(`${child.url}/v1/occurrences`, { headers: { authorization: `Bearer ${token}` } });
    expect((await list(await issuer.token('alice'))).status).toBe(200);
    const wrongAud = await list(await issuer.token('alice', { aud: 'someone-else' }));
    expect(wrongAud.status).toBe(401);
    expect(JSON.stringify(await wrongAud.json())).toMatch(/audience/);
    const wrongIss = await list(await issuer.token('alice', { iss: 'https://evil.example' }));
    expect(wrongIss.status).toBe(401);
    expect(JSON.stringify(await wrongIss.json())).toMatch(/issuer/);
  });

  it('plans on the server for a user with no device and writes the iteration back as that user, through the RLS writer role', async () => {
    await insertMission('bob', 'bob-m1', 0);
    const rows = await waitFor(
      async () => {
        const r = await db.admin<{ userId: string; writtenBy: string; data: { iterations: { source?: string }[] } }[]>`
          SELECT user_id AS "userId", written_by AS "writtenBy", data FROM public.sync_changes
          WHERE record_id = 'bob-m1' AND client_id = 'mana-ai-runner'`;
        return r.length > 0 && r;
      },
      30_000,
      'the server plan of bob-m1 in sync_changes',
    );
    expect(rows).toHaveLength(1);
    // written_by defaults to current_user: the writer role (NOBYPASSRLS), so the policy checked user_id.
    expect(rows[0]).toMatchObject({ userId: 'bob', writtenBy: 'mana_ai_writer' });
    expect(rows[0]!.data.iterations.at(-1)?.source).toBe('server');
    // mana-sync's read of the user's whole log (its rows and ours) takes every row.
    const log = await storedRows(db.admin as unknown as Sql, { userId: 'bob' });
    expect(log.map((r) => readLikeManaSync(r)).filter((o) => !o.ok)).toEqual([]);
    expect(await occurrence('bob')).toMatchObject({ status: 'planned', channel: 'server' });
    expect(llm.requestsFor('smoke bob-m1')[0]?.authorization).toBe(`Bearer ${KEY}`);
  });

  it("leaves mana-sync's catalog as it was: indexes, policies, triggers, owner, grants, every table named sync_changes", async () => {
    expect(await manaSyncCatalog(db.admin)).toEqual(catalogBefore);
  });
});

describe('SYNC_DATABASE_URL set, NODE_ENV unset', () => {
  it('behaves as production: creates and alters nothing of mana-sync and answers no /dev/*', async () => {
    const child = await startChild({ name: 'no-node-env', env: prodEnv({ NODE_ENV: '' }) });
    try {
      expect((await fetch(`${child.url}/ready`)).status).toBe(200);
      expect((await fetch(`${child.url}/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"userId":"x"}' })).status).toBe(404);
      expect((await fetch(`${child.url}/dev/sync/missions`)).status).toBe(404);
    } finally {
      await child.stop();
    }
    expect(await manaSyncCatalog(db.admin)).toEqual(catalogBefore);
  }, 60_000);

  it('without the production settings it refuses to start, one line per missing variable, touching nothing', async () => {
    const run = await runToExit({ SYNC_DATABASE_URL: db.loginUrl });
    expect(run.code).toBe(1);
    for (const name of ['MANA_SERVICE_KEY', 'JWKS_URL', 'JWT_ISSUER', 'JWT_AUDIENCE']) {
      expect(run.stderrLines.filter((l) => l.trim().startsWith(`${name}:`))).toHaveLength(1);
    }
    expect(run.stderr).not.toContain(db.loginUrl);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(await manaSyncCatalog(db.admin)).toEqual(catalogBefore);
  }, 60_000);
});

describe('a missing grant', () => {
  it.each([
    ['SELECT on sync_changes', `REVOKE SELECT ON public.sync_changes FROM ${LOGIN}`, `GRANT SELECT ON public.sync_changes TO ${LOGIN};`, `GRANT SELECT ON public.sync_changes TO ${LOGIN}`],
    ['BYPASSRLS', `ALTER ROLE ${LOGIN} NOBYPASSRLS`, `ALTER ROLE ${LOGIN} BYPASSRLS;`, `ALTER ROLE ${LOGIN} BYPASSRLS`],
    ['membership in the writer role', `REVOKE mana_ai_writer FROM ${LOGIN}`, `GRANT mana_ai_writer TO ${LOGIN};`, `GRANT mana_ai_writer TO ${LOGIN}`],
    // The writer's USAGE counts for the login too (it inherits it): both go.
    [
      'USAGE on the sync schema',
      `REVOKE USAGE ON SCHEMA public FROM ${LOGIN}, mana_ai_writer, PUBLIC`,
      `GRANT USAGE ON SCHEMA public TO ${LOGIN};`,
      `GRANT USAGE ON SCHEMA public TO ${LOGIN}, mana_ai_writer, PUBLIC`,
    ],
  ])('%s stops the start with one line naming the statement to run', async (_what, revoke, fix, restore) => {
    await db.admin.unsafe(revoke);
    try {
      const run = await runToExit(prodEnv());
      expect(run.code).toBe(1);
      expect(run.stderrLines).toHaveLength(1);
      expect(run.stderrLines[0]).toContain(fix);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await db.admin.unsafe(restore);
    }
  }, 60_000);

  it('pg_read_all_stats only degrades: the start goes on, the log and /ready name the grant', async () => {
    await db.admin.unsafe(`REVOKE pg_read_all_stats FROM ${LOGIN}`);
    try {
      const child = await startChild({ name: 'degraded', env: prodEnv() });
      try {
        const open = await fetch(`${child.url}/ready`);
        expect(open.status).toBe(200);
        expect(await open.json()).toEqual({ status: 'ready', degraded: ['read-all-stats'] });
        const detailed = (await (await fetch(`${child.url}/ready`, { headers: { 'x-service-key': KEY } })).json()) as Record<string, unknown>;
        expect(detailed['grants']).toEqual([`GRANT pg_read_all_stats TO ${LOGIN};`]);
        expect(child.linesWith('missing grant (running degraded)', 40).map((l) => l.msg)).toEqual([expect.stringContaining(`GRANT pg_read_all_stats TO ${LOGIN};`)]);
      } finally {
        await child.stop();
      }
    } finally {
      await db.admin.unsafe(`GRANT pg_read_all_stats TO ${LOGIN}`);
    }
  }, 60_000);
});
