/**
 * Fallback path: no device is reachable (no socket, no push subscription),
 * so the coordinator plans the occurrence itself through the (stub) LLM and
 * writes a `source: 'server'` iteration. Opening the demo later stages that
 * iteration as local proposals exactly once; a reload does not stage it again.
 */
import { test, expect, api, expectNoErrors, openDemo, logEntries, proposalsOf, planRuns, recordOccurrenceCalls, screenshot, unique, waitForOccurrence } from './helpers.js';
import type { Page } from '@playwright/test';

/** Calls the page's own client on the mission as the page sees it; resolves to the ids it staged now. */
function stageAgain(page: Page, missionId: string): Promise<string[]> {
  return page.evaluate(async (id) => {
    const session = JSON.parse(localStorage.getItem('mana-ai-demo:session') ?? 'null') as { token: string };
    const res = await fetch('/dev/sync/missions', { headers: { authorization: `Bearer ${session.token}` } });
    const mission = ((await res.json()) as { id: string }[]).find((m) => m.id === id);
    if (!mission || !window.manaDemo?.client) throw new Error('mission or client missing');
    return window.manaDemo.client.stageServerIterations(mission);
  }, missionId);
}

test('with no device, the server plans via the LLM; the page stages the server iteration once, and not again after a reload', async ({ browser, sql }, testInfo) => {
  const userId = unique('fb-user');
  const deviceId = unique('fb-dev');
  const title = `Renew the passport ${unique('fb')}`;
  const token = await api.token(userId);
  const missionId = await api.createMission(token, { title, dueInMs: 0, userId });

  const occ = await waitForOccurrence(userId, missionId, (o) => o.status === 'planned');
  expect(occ.channel).toBe('server');
  expect(await api.llmCallsMentioning(title)).toBe(1);
  expect(await planRuns(sql, occ.iterationId)).toMatchObject({ runs: 1, sources: ['server'] });
  let mission = (await api.missions(token)).find((m) => m.id === missionId);
  await expect.poll(async () => (mission = (await api.missions(token)).find((m) => m.id === missionId))?.iterations?.length ?? 0).toBe(1);
  expect(mission!.iterations![0]).toMatchObject({ id: occ.iterationId, source: 'server' });

  // The device shows up later: it stages the server's two steps as proposals, and plans nothing.
  const context = await browser.newContext();
  const recorded = recordOccurrenceCalls(context);
  const page = await openDemo(context, deviceId, userId);
  const cards = proposalsOf(page, occ.iterationId);
  await expect(cards).toHaveCount(2);
  await expect(cards.and(page.locator('[data-source=server][data-status=pending]'))).toHaveCount(2);
  await expect(cards.first()).toContainText('Server: write the first task');
  await expect(cards.first()).toContainText('Why: The stub LLM always starts with one task.');
  await expect(logEntries(page, 'staged')).toHaveCount(1);
  await cards.first().getByTestId('approve').click();
  await expect(cards.first()).toHaveAttribute('data-status', 'approved');

  // Reload: the proposals are still there (local), the approval kept, and nothing is staged again.
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#status')).toHaveAttribute('data-state', 'open');
  await expect(page.locator(`[data-testid=mission-row][data-mission-id="${missionId}"]`)).toContainText('1 (1 by the server)');
  await expect(cards).toHaveCount(2);
  await expect(cards.first()).toHaveAttribute('data-status', 'approved');
  expect(await stageAgain(page, missionId)).toEqual([]);
  await expect(logEntries(page, 'staged')).toHaveCount(0);
  await expect(page.locator(`[data-testid=occurrence-row][data-iteration-id="${occ.iterationId}"]`)).toHaveAttribute('data-status', 'planned');

  expect(recorded.calls, 'the device never claimed the server-planned occurrence').toEqual([]);
  expect(await planRuns(sql, occ.iterationId)).toMatchObject({ runs: 1, sources: ['server'] });
  await expectNoErrors(page);
  await screenshot(page, testInfo, 'fallback-final');
  await context.close();
});
