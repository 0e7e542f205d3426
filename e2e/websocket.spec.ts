/**
 * WebSocket path: the demo page is open and signed in; a mission created
 * from the page falls due ~2 s later; the coordinator nudges the tab over its
 * socket; the tab claims, plans with the demo planner, writes the iteration
 * back through sync and completes the occurrence. The server never plans it.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { test, expect, api, expectNoErrors, openDemo, logEntries, proposalsOf, planRuns, recordOccurrenceCalls, screenshot, unique, waitForOccurrence } from './helpers.js';

test('a due mission reaches the open tab over the WebSocket and is planned and completed there', async ({ browser, sql }, testInfo) => {
  // Readable ids, as this page is also the README's screenshot; each run has a fresh database,
  // but --repeat-each and retries share it, so those get unique ones.
  const first = testInfo.repeatEachIndex === 0 && testInfo.retry === 0;
  const userId = first ? 'alice' : unique('alice');
  const deviceId = first ? 'alice-laptop' : unique('alice-laptop');
  const title = first ? 'Plan my week ahead' : `Plan my week ${unique('ws')}`;
  const context = await browser.newContext();
  const recorded = recordOccurrenceCalls(context);
  const page = await openDemo(context, deviceId, userId);

  await page.locator('#mission-title').fill(title);
  await page.locator('#due-seconds').fill('2');
  const createdAt = Date.now();
  await page.locator('#create-mission').click();
  const row = page.locator('[data-testid=mission-row]').filter({ hasText: title });
  await expect(row).toHaveCount(1);
  const missionId = (await row.getAttribute('data-mission-id'))!;

  // The nudge arrives over the socket (not from the catch-up), is claimed and planned here.
  await expect(logEntries(page, 'nudge').filter({ hasText: 'via ws' })).toHaveCount(1, { timeout: 15_000 });
  const occ = await waitForOccurrence(userId, missionId, (o) => o.status === 'completed');
  const elapsed = Date.now() - createdAt;
  expect(occ).toMatchObject({ channel: 'ws', claimedBy: expect.stringMatching(new RegExp(`^${deviceId}/tab-`)), status: 'completed' });
  expect(elapsed, 'due in 2 s: not planned before it was due').toBeGreaterThanOrEqual(1_900);

  // 4-word title → the demo planner makes 3 steps, rendered as proposals from this device.
  const cards = proposalsOf(page, occ.iterationId);
  await expect(cards).toHaveCount(3);
  await expect(cards.and(page.locator('[data-source=browser][data-status=pending]'))).toHaveCount(3);
  await expect(logEntries(page, 'planned')).toHaveCount(1);
  await expect(page.locator(`[data-testid=occurrence-row][data-iteration-id="${occ.iterationId}"]`)).toHaveAttribute('data-status', 'completed');
  await expect(page.locator(`[data-testid=occurrence-row][data-iteration-id="${occ.iterationId}"]`)).toHaveAttribute('data-mine', 'true');

  // Exactly one claim (granted) and one complete, from this device; one plan run, by the browser; the server's LLM never saw it.
  await expect.poll(() => recorded.calls.filter((c) => c.iterationId === occ.iterationId)).toEqual([
    { action: 'claim', iterationId: occ.iterationId, status: 200 },
    { action: 'complete', iterationId: occ.iterationId, status: 200 },
  ]);
  expect(await planRuns(sql, occ.iterationId)).toMatchObject({ runs: 1, sources: ['browser'] });
  expect(await api.llmCallsMentioning(title)).toBe(0);
  const mission = (await api.missions(await api.token(userId))).find((m) => m.id === missionId);
  expect(mission?.iterations?.map((it) => [it.id, it.source])).toEqual([[occ.iterationId, 'browser']]);
  expect(Date.parse(mission!.nextRunAt!), 'the planner moved nextRunAt by the cadence (60 min)').toBeGreaterThan(Date.now() + 50 * 60_000);

  // Approve one, reject one: the review the demo is for.
  await cards.nth(0).getByTestId('approve').click();
  await cards.nth(1).getByTestId('reject').click();
  await expect(cards.nth(0)).toHaveAttribute('data-status', 'approved');
  await expect(cards.nth(1)).toHaveAttribute('data-status', 'rejected');

  await expectNoErrors(page);
  await screenshot(page, testInfo, 'websocket-final');
  // The README's picture of the demo (docs/demo.png, about 1100×830): the page zoomed out (0.8)
  // down to the occurrence ledger. Written there only with E2E_UPDATE_DOCS=1: a test run
  // leaves tracked files alone (the shot is always in the test's output folder).
  const clip = await page.evaluate(() => {
    document.body.style.zoom = '0.8';
    const ledger = document.getElementById('occurrences')!.closest('section')!.getBoundingClientRect();
    return { x: 0, y: 0, width: document.documentElement.clientWidth, height: Math.ceil(ledger.bottom + 14) };
  });
  const shot = testInfo.outputPath('demo.png');
  await page.screenshot({ path: shot, clip, fullPage: true });
  if (first && process.env['E2E_UPDATE_DOCS'] === '1') {
    mkdirSync(resolve('docs'), { recursive: true });
    copyFileSync(shot, resolve('docs', 'demo.png'));
  }
  await context.close();
});
