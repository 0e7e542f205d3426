/**
 * The user's time zone end to end: devices report it with their socket
 * auth and their push subscription; the coordinator keeps each user's
 * latest in Intl's canonical spelling (an unknown name is ignored, logged
 * and counted, never fatal); and a mission the server plans is advanced in
 * that zone: a Berlin user's daily 09:00 stays 09:00 in Berlin.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../support/db.js';
import { connectClient, openSocket } from '../support/coordinator.js';
import { startLlmStub, type LlmStub } from '../support/llm-stub.js';
import { subscriptionKeys } from '../nudge/web-push-helpers.js';
import { inMs, insertPlannableMissions, nextNineUtc, occurrenceRows, runnerRows, startPlanningCoordinator, waitFor, type PlanningCoordinator } from '../planner/support.js';

const ORIGIN = 'http://127.0.0.1:9';
let db: TestDb;
let stub: LlmStub | undefined;
const running: PlanningCoordinator[] = [];

beforeEach(async () => {
  db = await createTestDb({ poolMax: 6 });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await stub?.close();
  stub = undefined;
  await db.drop();
});

async function start(env: Record<string, string> = {}): Promise<PlanningCoordinator> {
  const c = await startPlanningCoordinator(db.sql, { PUSH_ENDPOINT_ALLOWLIST: ORIGIN, RATE_LIMIT_PER_MINUTE: '10000', ...env });
  running.push(c);
  return c;
}

async function zoneRow(userId: string): Promise<{ timeZone: string; deviceId: string } | undefined> {
  const [row] = await db.sql<{ timeZone: string; deviceId: string }[]>`
    SELECT time_zone AS "timeZone", device_id AS "deviceId" FROM mana_ai.user_time_zones WHERE user_id = ${userId}`;
  return row;
}

const berlinWallClock = (iso: string) =>
  new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hourCycle: 'h23', hour: '2-digit', minute: '2-digit' }).format(new Date(iso));

describe('reporting the zone', () => {
  it('with the socket auth: stored in canonical spelling; a later report from another device wins', async () => {
    const c = await start({ TICK_ENABLED: 'false' });
    const token = await c.token('tz-alice');
    // A socket without a zone reports nothing.
    const quiet = await connectClient(c.wsUrl, { token, deviceId: 'old-client' });
    const laptop = await openSocket(c.wsUrl);
    laptop.send({ type: 'auth', token, deviceId: 'laptop', timeZone: 'Europe/Berlin' });
    await laptop.next('auth-ok');
    await waitFor(async () => ((await zoneRow('tz-alice'))?.timeZone === 'Europe/Berlin' ? true : undefined), 3000, 'the zone of the auth frame');
    expect(await zoneRow('tz-alice')).toEqual({ timeZone: 'Europe/Berlin', deviceId: 'laptop' });
    await laptop.close();
    await quiet.close();

    // Another device, in a spelling of its own.
    const phone = await openSocket(c.wsUrl);
    phone.send({ type: 'auth', token, deviceId: 'phone', timeZone: 'america/new_york' });
    await phone.next('auth-ok');
    await waitFor(async () => ((await zoneRow('tz-alice'))?.deviceId === 'phone' ? true : undefined), 3000, 'the phone report');
    expect(await zoneRow('tz-alice')).toEqual({ timeZone: 'America/New_York', deviceId: 'phone' });
    await phone.close();
  });

  it('an unknown zone is ignored with a logged reason and counted; the socket is authenticated all the same', async () => {
    const c = await start({ TICK_ENABLED: 'false' });
    const token = await c.token('tz-bob');
    const s = await openSocket(c.wsUrl);
    s.send({ type: 'auth', token, deviceId: 'd1', timeZone: 'Mars/Olympus_Mons' });
    await s.next('auth-ok');
    s.send({ type: 'ping' });
    await s.next('pong');
    await waitFor(async () => ((await c.scrape()).value('mana_ai_time_zone_reports_total', { outcome: 'invalid' }) === 1 ? true : undefined), 3000, 'the invalid report counted');
    expect(await zoneRow('tz-bob')).toBeUndefined();
    expect(c.logs.some((l) => l.msg === 'ignoring a reported time zone Intl does not know' && l['timeZone'] === 'Mars/Olympus_Mons')).toBe(true);
    await s.close();
  });

  it('with the push subscription: stored; an unknown zone still registers the subscription; a zone that is not a string is a 400', async () => {
    const c = await start({ TICK_ENABLED: 'false' });
    const token = await c.token('tz-carol');
    const put = (deviceId: string, body: Record<string, unknown>) =>
      fetch(`${c.url}/v1/devices/${deviceId}/push-subscription`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ endpoint: `${ORIGIN}/push/${deviceId}`, keys: subscriptionKeys(), ...body }),
      });
    expect((await put('tablet', { timeZone: 'Australia/Lord_Howe' })).status).toBe(201);
    expect(await zoneRow('tz-carol')).toEqual({ timeZone: 'Australia/Lord_Howe', deviceId: 'tablet' });

    expect((await put('watch', { timeZone: 'Nowhere/Land' })).status).toBe(201);
    expect(await zoneRow('tz-carol')).toEqual({ timeZone: 'Australia/Lord_Howe', deviceId: 'tablet' });

    const bad = await put('toaster', { timeZone: 42 });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain('timeZone');
  });
});

describe('planning in the user zone', () => {
  it("a Berlin user's daily 09:00 mission planned by the server moves to the next 09:00 in Berlin; a user with no report gets DEFAULT_TIMEZONE (UTC)", async () => {
    stub = await startLlmStub();
    const c = await start({ MANA_LLM_URL: stub.url, DEFAULT_TIMEZONE: 'UTC' });
    const token = await c.token('tz-berliner');
    // The device reports its zone, then goes away, so the server plans.
    const s = await openSocket(c.wsUrl);
    s.send({ type: 'auth', token, deviceId: 'laptop', timeZone: 'Europe/Berlin' });
    await s.next('auth-ok');
    await waitFor(async () => (await zoneRow('tz-berliner')) ?? undefined, 3000, 'the Berlin report');
    await s.close();
    await waitFor(async () => ((await db.sql`SELECT 1 FROM mana_ai.presence WHERE user_id = 'tz-berliner'`).length === 0 ? true : undefined), 3000, 'presence gone');

    const before = new Date();
    await insertPlannableMissions(db.sql, [
      { userId: 'tz-berliner', missionId: 'm-berlin', nextRunAt: inMs(-1000) },
      { userId: 'tz-nobody', missionId: 'm-utc', nextRunAt: inMs(-1000) },
    ]);
    await waitFor(async () => ((await occurrenceRows(db.sql)).filter((o) => o.status === 'planned').length === 2 ? true : undefined), 10_000, 'both planned');
    const after = new Date();
    const rows = await runnerRows(db.sql);
    const berlin = rows.find((r) => r.userId === 'tz-berliner')!.data.nextRunAt!;
    const utc = rows.find((r) => r.userId === 'tz-nobody')!.data.nextRunAt!;

    expect(berlinWallClock(berlin)).toBe('09:00');
    expect(Date.parse(berlin)).toBeGreaterThan(before.getTime());
    expect(Date.parse(berlin)).toBeLessThanOrEqual(after.getTime() + 86_400_000);
    expect([nextNineUtc(before), nextNineUtc(after)]).toContain(utc);
  });
});
