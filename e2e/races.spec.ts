/**
 * Races: every nudge goes to every open socket of the user, so several tabs
 * and devices race for one occurrence. Exactly one plans it:
 * - two tabs of one browser (same device, shared IndexedDB): the Web Lock +
 *   dedup store let one tab claim; the other never even claims;
 * - two browsers (two devices) of one user: both claim, the server grants one;
 * - a device that was offline when its nudge came does not plan, once back,
 *   the occurrence the server planned meanwhile: it stages the server's plan.
 * "One plan" is counted where it lands: distinct plan runs of the iteration
 * id across sync_changes, granted claims, the LLM's prompts, planned events.
 */
import type { Page } from '@playwright/test';
import { test, expect, api, expectNoErrors, openDemo, logEntries, proposalsOf, planRuns, presenceCount, recordOccurrenceCalls, screenshot, unique, waitForOccurrence } from './helpers.js';

const countAll = async (pages: Page[], ...events: string[]) => {
  let n = 0;
  for (const p of pages) for (const event of events) n += await logEntries(p, event).count();
  return n;
};

/** Waits until every tab's nudge reached an outcome, so the counts that follow are final. */
async function settled(pages: Page[], nudges: number): Promise<void> {
  await expect.poll(() => countAll(pages, 'nudge'), { message: 'every tab was nudged' }).toBe(nudges);
  await expect.poll(() => countAll(pages, 'planned', 'skipped', 'elsewhere', 'released'), { message: 'every nudge reached an outcome' }).toBe(nudges);
}

test('two tabs of one browser: one claim, one plan', async ({ browser, sql }, testInfo) => {
  const userId = unique('race-user');
  const deviceId = unique('race-dev');
  const title = `Two tabs one plan ${unique('tabs')}`;
  const context = await browser.newContext();
  const recorded = recordOccurrenceCalls(context);
  const tab1 = await openDemo(context, deviceId, userId);
  const tab2 = await openDemo(context, deviceId, userId); // the session is restored from this profile's storage
  await expect.poll(() => presenceCount(sql, userId), { message: 'both tabs hold a socket' }).toBe(2);

  const missionId = await api.createMission(await api.token(userId), { title, dueInMs: 2_000, userId });
  const occ = await waitForOccurrence(userId, missionId, (o) => o.status === 'completed');
  // Claimed by one tab's context under the device id.
  expect(occ).toMatchObject({ channel: 'ws', claimedBy: expect.stringMatching(new RegExp(`^${deviceId}/tab-`)) });

  // Both tabs were nudged; one planned, the other stood aside (lock held, or already handled) without claiming.
  await settled([tab1, tab2], 2);
  expect(await countAll([tab1, tab2], 'planned')).toBe(1);
  expect(await countAll([tab1, tab2], 'skipped')).toBe(1);
  await expect.poll(() => recorded.calls.filter((c) => c.iterationId === occ.iterationId).map((c) => `${c.action}:${c.status}`)).toEqual(['claim:200', 'complete:200']);
  expect(await planRuns(sql, occ.iterationId)).toMatchObject({ runs: 1, sources: ['browser'] });
  expect(await api.llmCallsMentioning(title)).toBe(0);

  // Proposals are shared by the tabs of one profile: three, in both.
  await expect(proposalsOf(tab1, occ.iterationId)).toHaveCount(3);
  await expect(proposalsOf(tab2, occ.iterationId)).toHaveCount(3);
  for (const tab of [tab1, tab2]) await expectNoErrors(tab);
  await screenshot(tab2, testInfo, 'two-tabs-final');
  await context.close();
});

test('two browsers of one user: both claim, one is granted, one plan', async ({ browser, sql }, testInfo) => {
  const userId = unique('race-user');
  const devices = [unique('race-a'), unique('race-b')];
  const title = `Two devices one plan ${unique('devs')}`;
  const contexts = await Promise.all(devices.map(() => browser.newContext()));
  const recorded = contexts.map((c) => recordOccurrenceCalls(c));
  const pages = await Promise.all(contexts.map((c, i) => openDemo(c, devices[i]!, userId)));
  await expect.poll(() => presenceCount(sql, userId)).toBe(2);

  const missionId = await api.createMission(await api.token(userId), { title, dueInMs: 2_000, userId });
  const occ = await waitForOccurrence(userId, missionId, (o) => o.status === 'completed');
  const winner = devices.indexOf((occ.claimedBy ?? '').split('/')[0]!);
  expect(winner, `claimed by one of the two devices (${occ.claimedBy})`).toBeGreaterThanOrEqual(0);
  const loser = 1 - winner;

  await settled(pages, 2);
  expect(await countAll(pages, 'planned')).toBe(1);
  await expect(logEntries(pages[winner]!, 'planned')).toHaveCount(1);
  await expect(logEntries(pages[loser]!, 'elsewhere')).toHaveCount(1);
  // Both claimed: the winner was granted (200) and completed; the loser heard "held" (409) or, if it
  // came after the completion, "done" (410) — and claimed nothing else.
  const callsOf = (i: number) => recorded[i]!.calls.filter((c) => c.iterationId === occ.iterationId).map((c) => `${c.action}:${c.status}`);
  await expect.poll(() => callsOf(winner)).toEqual(['claim:200', 'complete:200']);
  await expect.poll(() => callsOf(loser).length).toBe(1);
  expect(['claim:409', 'claim:410']).toContain(callsOf(loser)[0]);
  expect(await logEntries(pages[loser]!, 'claimed').count()).toBe(0);
  expect(await planRuns(sql, occ.iterationId)).toMatchObject({ runs: 1, sources: ['browser'] });
  expect(await api.llmCallsMentioning(title)).toBe(0);

  // Proposals are local: the winner has three, the loser none (a browser-planned iteration is not staged).
  await expect(proposalsOf(pages[winner]!, occ.iterationId)).toHaveCount(3);
  // The loser syncs the winner's iteration (its missions poll) and does not stage it: it is not the server's.
  await expect(pages[loser]!.locator(`[data-testid=mission-row][data-mission-id="${missionId}"] td`).nth(3)).toHaveText('1', { timeout: 15_000 });
  await pages[loser]!.evaluate(() => window.manaDemo?.refresh());
  await expect(proposalsOf(pages[loser]!, occ.iterationId)).toHaveCount(0);
  expect(await logEntries(pages[loser]!, 'staged').count()).toBe(0);
  await expect(pages[loser]!.locator(`[data-testid=occurrence-row][data-iteration-id="${occ.iterationId}"]`)).toHaveAttribute('data-mine', 'false');
  for (const p of pages) await expectNoErrors(p);
  await screenshot(pages[winner]!, testInfo, 'two-browsers-winner');
  await screenshot(pages[loser]!, testInfo, 'two-browsers-loser');
  await Promise.all(contexts.map((c) => c.close()));
});

test('a device offline when its nudge came does not plan, once back, what the server planned meanwhile', async ({ browser, sql }, testInfo) => {
  const userId = unique('race-user');
  const deviceId = unique('race-off');
  const title = `Offline then back ${unique('off')}`;
  const context = await browser.newContext();
  const recorded = recordOccurrenceCalls(context);
  const page = await openDemo(context, deviceId, userId);
  await expect(logEntries(page, 'worker')).toHaveCount(1); // let the worker finish registering first

  // Offline: the socket still looks open to the server, so the nudge goes out over it, unanswered.
  await context.setOffline(true);
  const missionId = await api.createMission(await api.token(userId), { title, dueInMs: 0, userId });
  const occ = await waitForOccurrence(userId, missionId, (o) => o.status === 'planned');
  expect(occ, 'the claim deadline passed and the server planned it').toMatchObject({ channel: 'server', claimedBy: 'server:e2e' });
  expect(await api.llmCallsMentioning(title)).toBe(1);

  // Back online: the held-back nudge (or the reconnect's catch-up) meets a done occurrence; the server's plan is staged.
  await context.setOffline(false);
  const cards = proposalsOf(page, occ.iterationId);
  await expect(cards).toHaveCount(2, { timeout: 20_000 });
  await expect(cards.and(page.locator('[data-source=server]'))).toHaveCount(2);
  await expect(logEntries(page, 'staged')).toHaveCount(1);
  expect(await logEntries(page, 'claimed').count()).toBe(0);
  expect(await logEntries(page, 'planned').count()).toBe(0);
  const claims = recorded.calls.filter((c) => c.iterationId === occ.iterationId);
  expect(claims.filter((c) => c.status === 200), `no claim granted to the returning device: ${JSON.stringify(claims)}`).toEqual([]);
  expect(await planRuns(sql, occ.iterationId)).toMatchObject({ runs: 1, sources: ['server'] });
  await expect(page.locator(`[data-testid=occurrence-row][data-iteration-id="${occ.iterationId}"]`)).toHaveAttribute('data-status', 'planned');
  await screenshot(page, testInfo, 'offline-final');
  await context.close();
});
