/**
 * The server hands an occurrence back, and the device takes it again: an
 * end-to-end encrypted mission falls due, the tab claims it and its planner
 * fails, so the tab gives it back (a fixed code, never the planner's text);
 * the server cannot plan ciphertext and puts it back to waiting for a device,
 * offered again (attempt 2). When the app is opened again the tab plans it.
 * Before, the tab's dedup mark ("done elsewhere") skipped every re-offer for
 * seven days while the mission stalled.
 */
import { test, expect, api, logEntries, openDemo, planRuns, proposalsOf, recordOccurrenceCalls, unique, waitForOccurrence } from './helpers.js';

test('an encrypted mission given back after a failed plan, refused by the server, is offered again and planned on the device', async ({ browser, sql }) => {
  const userId = unique('hb-user');
  const deviceId = unique('hb-dev');
  const title = `Sealed review ${unique('hb')}`;
  const context = await browser.newContext();
  const recorded = recordOccurrenceCalls(context);
  const page = await openDemo(context, deviceId, userId);
  await page.evaluate(() => window.manaDemo!.failNextPlan!());
  const release = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/release'));

  const missionId = await api.createMission(await api.token(userId), { title, dueInMs: 1_500, userId, objective: 'enc:1:c2VhbGVkIG9iamVjdGl2ZQ==' });
  // First offer: claimed here, the planner fails, given back with a code and the error's class name only.
  await expect(logEntries(page, 'released')).toHaveCount(1);
  const body = (await release).postDataJSON() as Record<string, unknown>;
  expect(body).toEqual({ deviceId, contextId: expect.stringMatching(/^tab-/), code: 'plan-failed', reason: 'Error' });

  // The server cannot plan it (encrypted): back to waiting for a device, offered a second time.
  const waiting = await waitForOccurrence(userId, missionId, (o) => o.status === 'waiting');
  expect(waiting).toMatchObject({ channel: 'server', claimedBy: null });
  expect(waiting.lastError).toContain('encrypted');
  expect(JSON.stringify(waiting)).not.toContain('decrypted objective');
  const [row] = await sql<{ offers: number; reason: string }[]>`SELECT offers, reason FROM mana_ai.occurrences WHERE iteration_id = ${waiting.iterationId}`;
  expect(row).toEqual({ offers: 2, reason: 'encrypted' });

  // The user opens the app again: the re-offer (attempt 2) is taken although this browser stood aside for offer 1.
  await page.reload();
  await expect(page.locator('#status')).toHaveAttribute('data-state', 'open');
  const done = await waitForOccurrence(userId, missionId, (o) => o.status === 'completed');
  expect(done.claimedBy).toMatch(new RegExp(`^${deviceId}/tab-`));
  expect(await planRuns(sql, done.iterationId)).toMatchObject({ runs: 1, sources: ['browser'] });
  expect(await api.llmCallsMentioning(title)).toBe(0);
  await expect(proposalsOf(page, done.iterationId)).toHaveCount(3);
  await expect.poll(() => recorded.calls.filter((c) => c.iterationId === done.iterationId).map((c) => `${c.action}:${c.status}`)).toEqual(['claim:200', 'release:200', 'claim:200', 'complete:200']);
  // The only error the tab saw is its own planner's first failure (before the reload, the log was cleared).
  await expect(logEntries(page, 'error')).toHaveCount(0);
  await context.close();
});
