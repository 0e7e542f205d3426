/**
 * Sessions end, and the device side follows:
 * - an expired session: the tab's token runs out and the app has no fresh
 *   one; the server closes the socket at the expiry (4401), the tab does not
 *   reconnect in a loop, and the next due mission goes to the device by Web
 *   Push, where the worker plans it. (Before, the socket stayed open past its
 *   token, the router kept choosing it and every claim failed.)
 * - sign-out, then another user on the same browser: client.signOut()
 *   unsubscribes push here and on the server, closes the socket and forgets
 *   the first user's records; the first user's next mission is not pushed
 *   to this browser (the server plans it), the second user's is planned here.
 */
import { test, expect, api, demoRegistration, installFakePushManager, logEntries, openDemo, planRuns, presenceCount, proposalsOf, pushService, recordOccurrenceCalls, stack, unique, waitForOccurrence } from './helpers.js';
import type { Page } from '@playwright/test';

/** The module's own records in this browser's IndexedDB (db mana-ai-client, store iterations). */
function records(page: Page): Promise<{ key: string; state: string; user?: string }[]> {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const req = indexedDB.open('mana-ai-client');
        req.onerror = () => reject(req.error);
        req.onsuccess = () => {
          const db = req.result;
          if (!db.objectStoreNames.contains('iterations')) return resolve([]);
          const store = db.transaction('iterations', 'readonly').objectStore('iterations');
          const keys = store.getAllKeys();
          const values = store.getAll();
          values.onsuccess = () => resolve(values.result.map((v: { state: string; user?: string }, i: number) => ({ key: String(keys.result[i]), state: v.state, ...(v.user ? { user: v.user } : {}) })));
        };
      }),
  );
}

test('an expired session: the socket closes at the token’s expiry without a reconnect loop, and the next mission reaches the device by push', async ({ browser, sql }) => {
  const userId = unique('exp-user');
  const deviceId = unique('exp-dev');
  const title = `After the session ${unique('exp')}`;
  const context = await browser.newContext();
  await context.grantPermissions(['notifications'], { origin: stack.base });
  const recorded = recordOccurrenceCalls(context);
  const page = await openDemo(context, deviceId, userId, '&tokenTtl=8');
  await expect(logEntries(page, 'worker')).toHaveCount(1);
  const token = await api.token(userId);
  const sub = await pushService.subscribe(await api.vapidPublicKey());
  expect(await api.putSubscription(token, deviceId, sub)).toBe(201);
  const cdp = await context.newCDPSession(await context.newPage());
  const registrationId = await demoRegistration(cdp);

  // The app cannot renew the session any more: its last token runs out within 8 s.
  await page.evaluate(() => window.manaDemo!.freezeToken!());
  await expect(page.locator('#status')).toHaveAttribute('data-state', 'refused', { timeout: 20_000 });
  await expect(logEntries(page, 'disconnected').first()).toContainText('4401');
  await expect.poll(() => presenceCount(sql, userId), { message: 'the closed socket left no presence' }).toBe(0);

  // Due now: with no live socket the router chooses the device's push subscription.
  const missionId = await api.createMission(token, { title, dueInMs: 0, userId });
  const nudged = await waitForOccurrence(userId, missionId, (o) => o.status === 'nudged');
  expect(nudged.channel).toBe('push');
  let messages: string[] = [];
  await expect.poll(async () => (messages = await pushService.notifications(sub.clientHash)).length, { message: 'the push service received the nudge' }).toBe(1);
  expect(JSON.parse(messages[0]!)).toMatchObject({ missionId, iterationId: nudged.iterationId, attempt: 1 });
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: stack.base, registrationId, data: messages[0]! });

  // The worker (its own session, still renewable) claims under its own context and plans.
  const done = await waitForOccurrence(userId, missionId, (o) => o.status === 'completed');
  expect(done.claimedBy).toMatch(new RegExp(`^${deviceId}/sw-`));
  expect(await planRuns(sql, done.iterationId)).toMatchObject({ runs: 1, sources: ['browser'] });
  expect(await api.llmCallsMentioning(title)).toBe(0);
  // The tab stayed closed: one socket authenticated in all this time, none tried since the refusal.
  await expect(logEntries(page, 'connected')).toHaveCount(1);
  await expect.poll(() => recorded.calls.filter((c) => c.iterationId === done.iterationId).map((c) => `${c.action}:${c.status}`)).toEqual(['claim:200', 'complete:200']);
  await context.close();
});

test('sign-out, then another user on the same browser: the first user’s push and records are gone, each user’s missions go where they belong', async ({ browser, sql }) => {
  const alice = unique('so-alice');
  const bob = unique('so-bob');
  const deviceId = unique('so-dev');
  const context = await browser.newContext();
  await context.grantPermissions(['notifications'], { origin: stack.base });
  const sub = await pushService.subscribe(await api.vapidPublicKey());
  await installFakePushManager(context, sub);

  // Alice signs in, opts into push and plans one mission here.
  const page = await openDemo(context, deviceId, alice);
  await page.locator('#enable-push').click();
  await expect(page.locator('#push-status')).toHaveAttribute('data-state', 'enabled');
  expect(await sql`SELECT user_id FROM mana_ai.push_subscriptions WHERE endpoint = ${sub.endpoint}`).toEqual([{ user_id: alice }]);
  const aliceToken = await api.token(alice);
  const first = await api.createMission(aliceToken, { title: `Alice before ${unique('a')}`, dueInMs: 500, userId: alice });
  const planned = await waitForOccurrence(alice, first, (o) => o.status === 'completed');
  await expect(proposalsOf(page, planned.iterationId)).toHaveCount(3);
  await expect.poll(async () => (await records(page)).filter((r) => r.user === alice).length, { message: "Alice's records" }).toBeGreaterThan(0);

  // Sign-out: push unsubscribed here and on the server, the socket closed, Alice's records and proposals gone.
  await page.locator('#sign-out').click();
  await expect(logEntries(page, 'signed-out').first()).toBeVisible();
  await expect(page.locator('#signed-in-as')).toHaveText('nobody');
  expect(await page.evaluate(() => (window as unknown as { manaDemoPushCalls: unknown[] }).manaDemoPushCalls)).toContain('unsubscribe');
  expect(await sql`SELECT 1 FROM mana_ai.push_subscriptions WHERE endpoint = ${sub.endpoint}`).toHaveLength(0);
  await expect.poll(() => presenceCount(sql, alice)).toBe(0);
  expect((await records(page)).filter((r) => r.user === alice)).toEqual([]);
  await expect(proposalsOf(page, planned.iterationId)).toHaveCount(0);

  // Bob on the same browser and device id.
  await page.locator('#user-id').fill(bob);
  await page.locator('#sign-in').click();
  await expect(page.locator('#signed-in-as')).toHaveText(bob);
  await expect(page.locator('#status')).toHaveAttribute('data-state', 'open');

  // Alice's next mission: no socket of hers, no subscription: the server plans it; nothing is pushed to this browser.
  const aliceTitle = `Alice after ${unique('a')}`;
  const later = await api.createMission(aliceToken, { title: aliceTitle, dueInMs: 0, userId: alice });
  const serverPlanned = await waitForOccurrence(alice, later, (o) => o.status === 'planned');
  expect(serverPlanned.channel).toBe('server');
  expect(await api.llmCallsMentioning(aliceTitle)).toBe(1);
  // Bob's mission is planned here, by Bob's session.
  const bobMission = await api.createMission(await api.token(bob), { title: `Bob now ${unique('b')}`, dueInMs: 500, userId: bob });
  const bobDone = await waitForOccurrence(bob, bobMission, (o) => o.status === 'completed');
  expect(bobDone.claimedBy).toMatch(new RegExp(`^${deviceId}/tab-`));
  await expect(proposalsOf(page, bobDone.iterationId)).toHaveCount(3);
  expect(await pushService.notifications(sub.clientHash)).toEqual([]);
  await context.close();
});
