/**
 * Push path: only the service worker is alive. The page signs in once (the
 * worker reads that session from IndexedDB) and registers its worker; the
 * device's push subscription is one the local push service (web-push-testing)
 * created, since offline Chromium's own pushManager.subscribe() fails. With
 * the page closed, the coordinator sends a real encrypted Web Push; the test
 * reads the decrypted payload from the push service and hands it to the
 * worker through CDP ServiceWorker.deliverPushMessage. Three missions fall
 * due at one instant: one push names all three, the worker claims, plans and
 * completes each exactly once and shows ONE notification, "3 missions
 * planned — proposals ready"; reopening the page shows the proposals.
 *
 * Second test: enablePush's own logic (VAPID key → subscribe with
 * userVisibleOnly → PUT) with the browser's PushManager replaced at page
 * level by window.manaDemoPushManager.
 */
import { test, expect, api, demoRegistration, expectNoErrors, installFakePushManager, openDemo, logEntries, proposalsOf, planRuns, presenceCount, pushService, recordOccurrenceCalls, screenshot, stack, unique, waitForOccurrence } from './helpers.js';

test('with the page closed, ONE real Web Push for three missions due together reaches the service worker, which plans all three and shows one notification; the reopened page shows the proposals', async ({ browser, sql }, testInfo) => {
  const userId = unique('push-user');
  const deviceId = unique('push-dev');
  const title = `Tidy the garden ${unique('push')}`;
  const context = await browser.newContext();
  await context.grantPermissions(['notifications'], { origin: stack.base });
  const recorded = recordOccurrenceCalls(context);

  // Sign in once: the session lands in IndexedDB for the worker; the worker registers and activates.
  const page = await openDemo(context, deviceId, userId);
  await expect(logEntries(page, 'worker')).toHaveCount(1);

  // The device's subscription, created by the local push service for the server's VAPID key.
  const token = await api.token(userId);
  const sub = await pushService.subscribe(await api.vapidPublicKey());
  expect(await api.putSubscription(token, deviceId, sub)).toBe(201);

  // A page of the same context hosts the CDP session (about:blank: no socket, no session of its own).
  const host = await context.newPage();
  const cdp = await context.newCDPSession(host);
  const registrationId = await demoRegistration(cdp);

  // Close the demo: no socket left, so the router must choose Web Push.
  await page.close();
  await expect.poll(() => presenceCount(sql, userId), { message: 'the closed tab left no presence' }).toBe(0);

  // Three missions falling due at one instant: one wake-up, not three.
  const titles = [title, `${title} (2)`, `${title} (3)`];
  const missionIds = await api.createMissions(token, { titles, dueInMs: 0, userId });
  const nudged = await Promise.all(missionIds.map((m) => waitForOccurrence(userId, m, (o) => o.status === 'nudged')));
  for (const o of nudged) expect(o).toMatchObject({ channel: 'push', claimedBy: null });
  const iterationOf = new Map(nudged.map((o) => [o.missionId, o.iterationId]));

  // The coordinator's ONE push went through the real push service, encrypted, naming all three.
  let messages: string[] = [];
  await expect.poll(async () => (messages = await pushService.notifications(sub.clientHash)).length, { message: 'the push service received the nudge' }).toBe(1);
  const pushed = JSON.parse(messages[0]!) as { type: string; missionId: string; iterationId: string; dueAt: string; missions: { missionId: string; iterationId: string; dueAt: string }[] };
  expect(pushed.missions.map((m) => m.missionId).sort()).toEqual([...missionIds].sort());
  // attempt: the first offer of each to the user's devices.
  for (const m of pushed.missions) expect(m).toEqual({ missionId: m.missionId, iterationId: iterationOf.get(m.missionId), dueAt: nudged[0]!.dueAt, attempt: 1 });
  expect(pushed).toMatchObject({ type: 'mission-due', ...pushed.missions[0] });
  const firstMission = pushed.missions[0]!.missionId;

  await cdp.send('ServiceWorker.deliverPushMessage', { origin: stack.base, registrationId, data: messages[0]! });

  // The worker (no page open) claimed, planned with the demo planner and completed each, exactly once.
  const done = await Promise.all(missionIds.map((m) => waitForOccurrence(userId, m, (o) => o.status === 'completed')));
  for (const [i, o] of done.entries()) {
    // Claimed by the worker's own context under the device id: never by the bare device.
    expect(o).toMatchObject({ channel: 'push', claimedBy: expect.stringMatching(new RegExp(`^${deviceId}/sw-`)) });
    expect(await planRuns(sql, o.iterationId)).toMatchObject({ runs: 1, sources: ['browser'] });
    expect(await api.llmCallsMentioning(titles[i]!)).toBe(0);
    // The worker's own requests (the context sees them): one claim, one complete.
    await expect.poll(() => recorded.calls.filter((c) => c.iterationId === o.iterationId).map((c) => `${c.action}:${c.status}`)).toEqual(['claim:200', 'complete:200']);
  }
  expect(await pushService.notifications(sub.clientHash)).toHaveLength(1);

  // Still no page of the origin open: the worker showed ONE notification for the three (Chrome demands one per push).
  const worker = context.serviceWorkers().find((w) => w.url() === `${stack.base}/demo/sw.js`);
  expect(worker, 'the demo service worker is running').toBeTruthy();
  expect(context.pages().map((p) => p.url())).toEqual(['about:blank']);
  const shown = () =>
    worker!.evaluate(async () => {
      const list = await (self as unknown as ServiceWorkerGlobalScope).registration.getNotifications();
      return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data as unknown }));
    });
  const expected = [
    {
      title: 'mana-ai demo',
      body: '3 missions planned — proposals ready',
      tag: firstMission,
      data: {
        missionId: firstMission,
        iterationId: iterationOf.get(firstMission),
        iterationIds: pushed.missions.map((m) => m.iterationId),
        planned: 3,
        url: `${stack.base}/demo`,
        outcome: 'planned',
      },
    },
  ];
  await expect.poll(shown, { message: 'the worker showed one "3 missions planned" notification' }).toEqual(expected);

  // Reopen: the notification is still there, and so are the proposals the worker planned.
  const again = await openDemo(context, deviceId, userId);
  const fromPage = await again.evaluate(async () => {
    const reg = await navigator.serviceWorker.getRegistration('/demo/');
    const list = reg ? await reg.getNotifications() : [];
    return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data as unknown }));
  });
  expect(fromPage).toEqual(expected);
  for (const o of done) {
    const cards = proposalsOf(again, o.iterationId);
    await expect(cards).toHaveCount(3);
    await expect(cards.and(again.locator('[data-source=browser][data-status=pending]'))).toHaveCount(3);
    // The reopened tab does not plan it again (it is completed; its catch-up skips it).
    await expect(again.locator(`[data-testid=occurrence-row][data-iteration-id="${o.iterationId}"]`)).toHaveAttribute('data-status', 'completed');
  }
  await expect(logEntries(again, 'claimed')).toHaveCount(0);
  await expectNoErrors(again);
  await screenshot(again, testInfo, 'push-final');
  await context.close();
});

test("enablePush subscribes through the page's PushManager with userVisibleOnly and the server's key, and registers that subscription", async ({ browser, sql }, testInfo) => {
  const userId = unique('push-user');
  const deviceId = unique('push-dev');
  const serverKey = await api.vapidPublicKey();
  const sub = await pushService.subscribe(serverKey);
  const context = await browser.newContext();
  await context.grantPermissions(['notifications'], { origin: stack.base });
  // Offline Chromium cannot subscribe: stand in for the browser's PushManager, handing out the push service's subscription.
  await installFakePushManager(context, sub);

  const page = await openDemo(context, deviceId, userId);
  const put = page.waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith(`/v1/devices/${deviceId}/push-subscription`));
  await page.locator('#enable-push').click();
  // With the browser's time zone, which the server advances missions it planned in.
  const timeZone = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
  expect((await put).postDataJSON()).toEqual({ endpoint: sub.endpoint, expirationTime: null, keys: sub.keys, timeZone });
  expect((await (await put).response())?.status()).toBe(201);
  await expect(page.locator('#push-status')).toHaveAttribute('data-state', 'enabled');
  await expect(logEntries(page, 'push-enabled')).toContainText(stack.wpt);
  expect(await page.evaluate(() => (window as unknown as { manaDemoPushCalls: unknown[] }).manaDemoPushCalls)).toEqual([
    'getSubscription',
    { subscribe: { userVisibleOnly: true, applicationServerKey: serverKey } },
  ]);
  const rows = await sql<{ device_id: string; user_id: string; vapid_public_key: string }[]>`
    SELECT device_id, user_id, vapid_public_key FROM mana_ai.push_subscriptions WHERE endpoint = ${sub.endpoint}`;
  expect(rows).toEqual([{ device_id: deviceId, user_id: userId, vapid_public_key: serverKey }]);

  // A reload re-registers (idempotent: the existing subscription, no new subscribe()).
  const again = page.waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith(`/v1/devices/${deviceId}/push-subscription`));
  await page.reload();
  expect((await (await again).response())?.status()).toBe(200);
  await expect(page.locator('#push-status')).toHaveAttribute('data-state', 'enabled');

  // That registration is what the coordinator pushes to once the tab is gone.
  const token = await api.token(userId);
  await expectNoErrors(page);
  await screenshot(page, testInfo, 'enable-push-final');
  await page.close();
  await expect.poll(() => presenceCount(sql, userId)).toBe(0);
  const missionId = await api.createMission(token, { title: `Water the plants ${unique('push')}`, dueInMs: 0, userId });
  await expect.poll(async () => (await pushService.notifications(sub.clientHash)).map((m) => (JSON.parse(m) as { missionId: string }).missionId)).toEqual([missionId]);

  // Disable: DELETE, the subscription is dropped server-side and unsubscribed in the browser.
  const last = await context.newPage();
  await last.goto(`${stack.base}/demo?device=${deviceId}`);
  await expect(last.locator('#push-status')).toHaveAttribute('data-state', 'enabled');
  const del = last.waitForRequest((r) => r.method() === 'DELETE' && r.url().endsWith(`/v1/devices/${deviceId}/push-subscription`));
  await last.locator('#disable-push').click();
  expect((await (await del).response())?.status()).toBe(204);
  await expect(last.locator('#push-status')).toHaveAttribute('data-state', 'disabled');
  expect(await sql`SELECT 1 FROM mana_ai.push_subscriptions WHERE endpoint = ${sub.endpoint}`).toHaveLength(0);
  await context.close();
});
