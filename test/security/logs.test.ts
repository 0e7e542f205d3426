/**
 * Logs never contain credentials, push secrets or mission text. A
 * coordinator logging at `trace` into a captured stream goes through a run
 * that touches every path where such a value passes: dev tokens and forged
 * tokens on HTTP and the socket, right and wrong service keys, a push
 * subscription and a delivered push (real web-push-testing), a push that
 * nobody claims, server planning through a stub mana-llm that first
 * answers with prose, an error page, broken JSON and an invalid plan that
 * all echo the mission back, then a plan. Afterwards the captured output is grepped for
 * every secret and every piece of distinctive mission text.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { reply, startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { connectClient, inMs, openSocket, waitFor } from '../support/coordinator.js';
import { signDevToken } from '../../src/auth/user-auth.js';
import { startWebPushTesting, type WebPushTesting, type TestSubscription } from '../nudge/web-push-testing-server.js';
import { insertPlannable, ledger, putSubscription, SERVICE_KEY, startCaptured, type CapturedCoordinator } from '../faults/support.js';

const TITLE = 'ZEBRA-TITLE-7f3a quarterly tax return';
const OBJECTIVE = 'QUOKKA-OBJECTIVE-19c2 file before the deadline';
const CONCEPT = 'NARWHAL-CONCEPT-55e1 never call my accountant before noon';
/** Short on purpose: an excerpt of a few characters is a leak too. */
const MARKERS = ['ZEBRA', 'QUOKKA', 'NARWHAL', 'quarterly tax', 'accountant'];

let db: TestDb;
let llm: LlmStub;
let wpt: WebPushTesting;
let c: CapturedCoordinator;
let sub: TestSubscription;
const secrets: Record<string, string> = {};

beforeAll(async () => {
  db = await createTestDb({ poolMax: 8 });
  wpt = await startWebPushTesting();
  let calls = 0;
  llm = await startLlmStub(() => {
    calls += 1;
    switch (calls) {
      case 1:
        return { kind: 'content', content: `Sure! Regarding "${TITLE}": ${OBJECTIVE}. ${CONCEPT}.` };
      case 2:
        return { kind: 'status', status: 500, body: `{"error":"model crashed while reading: ${TITLE} / ${CONCEPT}"}` };
      case 3:
        return { kind: 'content', content: `{"summary": ${TITLE}, "steps": [{"summary": "${OBJECTIVE}"}]}` };
      case 4:
        // Valid JSON, invalid plan: the parser's reason quotes what the model wrote.
        return reply.plan([{ summary: TITLE, toolName: 'create_task', params: { title: OBJECTIVE, priority: CONCEPT }, rationale: CONCEPT }]);
      default:
        return reply.plan([{ summary: `Work on ${TITLE}`, toolName: 'create_task', params: { title: OBJECTIVE }, rationale: CONCEPT }]);
    }
  });
  c = await startCaptured(
    db.sql,
    {
      MANA_LLM_URL: llm.url,
      PUSH_ENDPOINT_ALLOWLIST: wpt.origin,
      PUSH_CLAIM_TIMEOUT_MS: '500',
      PLANNER_MAX_ATTEMPTS: '5',
      PLANNER_MAX_RETRIES: '0',
      PLANNER_RETRY_BACKOFF_MS: '100',
    },
    { level: 'trace' },
  );
});

afterAll(async () => {
  await c?.stop();
  await Promise.all([llm?.close(), wpt?.close()]);
  await db?.drop();
});

describe('what the logs never contain', () => {
  it('tokens, keys, push endpoints and mission text stay out of a full run at trace level', async () => {
    const alice = await c.token('alice');
    const [devSecretRow] = await db.sql<{ value: string }[]>`SELECT value #>> '{}' AS value FROM mana_ai.settings WHERE key = 'dev_jwt_secret'`;
    const [vapidRow] = await db.sql<{ value: { privateKey: string; publicKey: string } }[]>`SELECT value FROM mana_ai.settings WHERE key = 'dev_vapid_keys'`;
    const forged = await signDevToken(randomBytes(32), 'alice');
    const expired = await signDevToken(Buffer.from(devSecretRow!.value, 'base64'), 'alice', 60, { now: () => Date.now() - 3_600_000 });
    Object.assign(secrets, {
      'alice token': alice,
      'alice token signature': alice.split('.')[2]!,
      'forged token signature': forged.split('.')[2]!,
      'expired token signature': expired.split('.')[2]!,
      'service key': SERVICE_KEY,
      'wrong service key': 'WRONG-SERVICE-KEY-3e9d0c',
      'dev JWT secret': devSecretRow!.value,
      'VAPID private key': vapidRow!.value.privateKey,
    });

    // Push subscription, registered and (later) delivered to.
    sub = await wpt.subscribe(vapidRow!.value.publicKey);
    Object.assign(secrets, { 'push endpoint path': new URL(sub.endpoint).pathname, 'push endpoint id': sub.clientHash, p256dh: sub.keys.p256dh, 'push auth secret': sub.keys.auth });
    expect((await putSubscription(c.url, alice, 'phone', sub)).status).toBe(201);

    // Tokens over HTTP and the socket, good and bad.
    for (const token of [alice, forged, expired]) await (await fetch(`${c.url}/v1/occurrences`, { headers: { authorization: `Bearer ${token}` } })).arrayBuffer();
    await (await fetch(`${c.url}/v1/occurrences`, { headers: { authorization: forged } })).arrayBuffer();
    const ws = await connectClient(c.wsUrl, { token: alice, deviceId: 'laptop' });
    await ws.close();
    for (const token of [forged, expired]) {
      const bad = await openSocket(c.wsUrl);
      bad.send({ type: 'auth', token, deviceId: 'laptop' });
      await bad.closed;
    }
    // Service keys, right and wrong.
    for (const key of [SERVICE_KEY, secrets['wrong service key']!]) {
      await (await fetch(`${c.url}/internal/occurrences`, { headers: { 'x-service-key': key } })).arrayBuffer();
    }

    // A mission pushed to the device, never claimed, then planned by the server after three bad replies.
    await insertPlannable(db.sql, [{ userId: 'alice', missionId: 'taxes', nextRunAt: inMs(-1000), title: TITLE, objective: OBJECTIVE, conceptMarkdown: CONCEPT }]);
    const occ = await waitFor(async () => (await ledger(db.sql, 'alice')).find((o) => o.status === 'planned'), 15_000, 'the server plan');
    await c.planner!.idle();
    expect(occ.attempts).toBe(5);
    expect(await wpt.notifications(sub.clientHash)).toHaveLength(1);
    expect(llm.requests).toHaveLength(5);
    expect(llm.requests[0]!.authorization).toBe(`Bearer ${SERVICE_KEY}`);

    // The run did log: requests, auth refusals, the push, the retries, the plan.
    const all = c.lines.join('\n');
    for (const msg of ['request', 'socket auth refused', 'server planning failed; will retry', 'planned on the server', 'deadline or lease passed; handing to the fallback']) {
      expect(all, msg).toContain(`"msg":"${msg}"`);
    }
    expect(c.lines.length).toBeGreaterThan(20);

    const leaks = [
      ...Object.entries(secrets).filter(([, v]) => all.includes(v)).map(([k]) => k),
      ...MARKERS.filter((m) => all.includes(m)).map((m) => `mission text "${m}"`),
    ];
    const context = leaks.length
      ? c.lines.filter((l) => Object.values(secrets).some((v) => l.includes(v)) || MARKERS.some((m) => l.includes(m))).map((l) => l.slice(0, 400))
      : [];
    expect(leaks, context.join('\n')).toEqual([]);
  });
});
