/**
 * Contexts of one browser race for one occurrence, and the server grants
 * one: two tabs of one device with no Web Locks and an IndexedDB that will
 * not open (so nothing local keeps them apart), and the service worker, woken
 * by a push for the same occurrence at the same instant. Each claims under
 * its own context id; exactly one is granted and plans, the others hear
 * "held" (409) or "done" (410). Before contexts, both tabs were granted (the
 * server re-granted the same device) and both planned.
 */
import { instantOf } from '../src/projection/instant.js';
import { iterationIdFor } from '../src/schedule/occurrence-id.js';
import { test, expect, api, demoRegistration, logEntries, openDemo, planRuns, presenceCount, recordOccurrenceCalls, stack, unique, waitForOccurrence } from './helpers.js';

test('two tabs without Web Locks or IndexedDB and the service worker race for one occurrence: one context is granted, one plan', async ({ browser, sql }) => {
  const userId = unique('ctx-user');
  const deviceId = unique('ctx-dev');
  const title = `Three contexts one plan ${unique('ctx')}`;
  const context = await browser.newContext();
  await context.grantPermissions(['notifications'], { origin: stack.base });
  const recorded = recordOccurrenceCalls(context);
  // The tabs only (init scripts do not reach the worker): no Web Locks, and the module's store fails to open.
  await context.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined });
    const open = IDBFactory.prototype.open;
    IDBFactory.prototype.open = function (this: IDBFactory, name: string, version?: number) {
      if (name === 'mana-ai-client') throw new DOMException('blocked by the test', 'UnknownError');
      return version === undefined ? open.call(this, name) : open.call(this, name, version);
    };
  });
  const tab1 = await openDemo(context, deviceId, userId);
  await expect(logEntries(tab1, 'worker')).toHaveCount(1);
  const tab2 = await openDemo(context, deviceId, userId);
  await expect.poll(() => presenceCount(sql, userId), { message: 'both tabs hold a socket' }).toBe(2);
  const cdp = await context.newCDPSession(await context.newPage());
  const registrationId = await demoRegistration(cdp);

  // Due in 3 s; the worker's push names the same occurrence and arrives at the same instant as the tabs' frames.
  const now = new Date();
  const dueMs = now.getTime() + 3_000;
  const missionId = await api.createMission(await api.token(userId), { title, dueInMs: 3_000, userId, now });
  const iterationId = iterationIdFor(userId, missionId, instantOf(new Date(dueMs)));
  const payload = JSON.stringify({ type: 'mission-due', missionId, iterationId, dueAt: instantOf(new Date(dueMs)), attempt: 1 });
  await new Promise((r) => setTimeout(r, Math.max(0, dueMs - Date.now())));
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: stack.base, registrationId, data: payload });

  const occ = await waitForOccurrence(userId, missionId, (o) => o.status === 'completed');
  expect(occ.iterationId).toBe(iterationId);
  expect(occ.claimedBy).toMatch(new RegExp(`^${deviceId}/(tab|sw)-`));
  const claims = () => recorded.calls.filter((c) => c.iterationId === iterationId && c.action === 'claim');
  // Both tabs and the worker claimed; one was granted.
  await expect.poll(() => claims().length, { message: 'three claims' }).toBeGreaterThanOrEqual(3);
  expect(claims().filter((c) => c.status === 200)).toHaveLength(1);
  expect(claims().filter((c) => c.status !== 200).every((c) => c.status === 409 || c.status === 410)).toBe(true);
  expect(await planRuns(sql, iterationId)).toMatchObject({ runs: 1, sources: ['browser'] });
  expect(await api.llmCallsMentioning(title)).toBe(0);
  // Each tab said it keeps its records in memory now.
  for (const tab of [tab1, tab2]) await expect(logEntries(tab, 'warning')).toContainText('storage-fallback');
  await context.close();
});
