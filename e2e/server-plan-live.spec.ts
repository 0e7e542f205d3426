/**
 * A server plan reaches an open tab at once. The tab runs the browser
 * module in real Chromium (in the Berlin zone) with a planner that fails, so
 * the device releases the occurrence and the server plans it through the
 * LLM while the tab is open; the server's write-back is announced on the
 * tab's socket (`mission-changed`), and the tab pulls the mission then,
 * finding the server's iteration: within a second of the write. The zone
 * the browser reported with its auth is the one the coordinator keeps.
 */
import { test, expect, api, planRuns, stack, unique, waitForOccurrence } from './helpers.js';

interface PageEvent {
  type: string;
  missionId?: string;
  iterationId?: string;
  /** Date.now() in the page when the event fired. */
  receivedAt: number;
  /** For mission-changed: when the tab's pull of the missions answered, and the iteration sources it found. */
  pulledAt?: number;
  sources?: string[];
}

declare global {
  interface Window {
    liveEvents?: PageEvent[];
    createMissionClient?: typeof import('../web-client/src/index.js').createMissionClient;
  }
}

test('the server plans while a tab is open (its planner failed); the tab hears of the write-back within a second and pulls the iteration', async ({ browser, sql }) => {
  const userId = unique('live-user');
  const deviceId = unique('live-dev');
  const token = await api.token(userId);
  const context = await browser.newContext({ timezoneId: 'Europe/Berlin' });
  const page = await context.newPage();
  // Any page of the coordinator's origin: the module and the API are same-origin there.
  await page.goto(`${stack.base}/health`);
  await page.addScriptTag({ type: 'module', content: "import { createMissionClient } from '/web-client/dist/index.js'; window.createMissionClient = createMissionClient;" });
  await page.waitForFunction(() => typeof window.createMissionClient === 'function');
  await page.evaluate(
    ({ token, deviceId }) => {
      const createMissionClient = window.createMissionClient!;
      const events: PageEvent[] = [];
      window.liveEvents = events;
      const client = createMissionClient({
        baseUrl: location.origin,
        getToken: async () => token,
        deviceId,
        // This device cannot plan now: it releases the occurrence and the server plans it at once.
        planLocally: async () => {
          throw new Error('no planner on this device today');
        },
        stageIteration: async () => undefined,
      });
      client.onEvent((e) => {
        const entry: PageEvent = { type: e.type, receivedAt: Date.now(), ...('missionId' in e ? { missionId: e.missionId } : {}), ...('iterationId' in e && e.iterationId ? { iterationId: e.iterationId } : {}) };
        events.push(entry);
        if (e.type !== 'mission-changed') return;
        // What the app does on the event: pull the mission now. The webapp pulls mana-sync, which has
        // the row at once; the demo's dev endpoint serves the coordinator's projection, a pass behind.
        const pull = async (): Promise<void> => {
          const res = await fetch('/dev/sync/missions', { headers: { authorization: `Bearer ${token}` } });
          const missions = (await res.json()) as { id: string; iterations?: { id: string; source?: string }[] }[];
          const iterations = missions.find((m) => m.id === e.missionId)?.iterations ?? [];
          if (!iterations.some((it) => it.id === e.iterationId)) return void setTimeout(() => void pull(), 50);
          entry.pulledAt = Date.now();
          entry.sources = iterations.map((it) => it.source ?? '?');
        };
        void pull();
      });
      client.start();
    },
    { token, deviceId },
  );
  await expect.poll(() => page.evaluate(() => window.liveEvents?.some((e) => e.type === 'connected') ?? false)).toBe(true);
  // The hub keeps the zone after it answers auth-ok: poll, it is not there the moment "connected" fires.
  await expect
    .poll(async () => (await sql<{ zone: string }[]>`SELECT time_zone AS zone FROM mana_ai.user_time_zones WHERE user_id = ${userId}`).map((z) => z.zone))
    .toEqual(['Europe/Berlin']);

  const title = `Live server plan ${unique('live')}`;
  const missionId = await api.createMission(token, { title, dueInMs: 0, userId });
  const occ = await waitForOccurrence(userId, missionId, (o) => o.status === 'planned');
  expect(occ.channel).toBe('server');

  const changed = await expect
    .poll(async () => (await page.evaluate(() => window.liveEvents ?? [])).find((e) => e.type === 'mission-changed' && e.pulledAt !== undefined), { timeout: 10_000 })
    .toBeTruthy()
    .then(async () => (await page.evaluate(() => window.liveEvents ?? [])).find((e) => e.type === 'mission-changed')!);
  expect(changed).toMatchObject({ missionId, iterationId: occ.iterationId, sources: ['server'] });

  // The write-back's commit, by the database clock (same machine as the browser).
  const [row] = await sql<{ at: Date }[]>`
    SELECT created_at AS at FROM sync_changes WHERE user_id = ${userId} AND record_id = ${missionId} AND client_id = 'mana-ai-runner'`;
  const written = row!.at.getTime();
  expect(changed.receivedAt - written, 'ms from the write-back to the event in the tab').toBeLessThan(1000);
  // The projection the dev endpoint serves runs a pass (200 ms here) behind the write.
  expect(changed.pulledAt! - written, 'ms from the write-back to the tab holding the iteration').toBeLessThan(2000);

  const events = await page.evaluate(() => (window.liveEvents ?? []).map((e) => e.type));
  expect(events).toEqual(expect.arrayContaining(['connected', 'nudge', 'claimed', 'released', 'mission-changed']));
  expect(await planRuns(sql, occ.iterationId)).toMatchObject({ runs: 1, sources: ['server'] });
  await context.close();
});
