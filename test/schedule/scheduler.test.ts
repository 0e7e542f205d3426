/**
 * The scheduler loop on its own (no database): passes never overlap, the
 * interval counts from a pass's start, it wakes at the earliest nextDueAt.
 * With a real coordinator: test/schedule/due.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createScheduler, type PassResult } from '../../src/schedule/scheduler.js';

const silent = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('scheduler', () => {
  it('never overlaps: concurrent triggers during a slow pass coalesce into one follow-up pass', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let passes = 0;
    const scheduler = createScheduler<number>({
      intervalMs: 60_000,
      log: silent,
      async runPass(): Promise<PassResult<number>> {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const mine = ++passes;
        await sleep(100);
        inFlight--;
        return { stats: mine, nextDueAt: null };
      },
    });
    const first = scheduler.runOnce();
    await sleep(10);
    expect(scheduler.state().state).toBe('running');
    const triggers = [scheduler.runOnce(), scheduler.runOnce(), scheduler.runOnce(), scheduler.runOnce()];
    expect(await first).toBe(1);
    // Every trigger during pass 1 is answered by the same pass 2, which started after pass 1.
    expect(await Promise.all(triggers)).toEqual([2, 2, 2, 2]);
    expect(passes).toBe(2);
    expect(maxInFlight).toBe(1);
    expect(await scheduler.runOnce()).toBe(3);
    await scheduler.stop();
    expect(scheduler.state().state).toBe('stopped');
    await expect(scheduler.runOnce()).rejects.toThrow(/stopped/);
  });

  it('the loop and manual triggers never overlap either, and a failing pass does not stop the loop', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let passes = 0;
    const errors: unknown[] = [];
    const scheduler = createScheduler<number>({
      intervalMs: 60,
      log: silent,
      onError: (e) => errors.push(e),
      async runPass() {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const mine = ++passes;
        await sleep(25);
        inFlight--;
        if (mine === 2) throw new Error('database went away');
        return { stats: mine, nextDueAt: null };
      },
    });
    scheduler.start();
    const manual: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      manual.push(scheduler.runOnce().catch((e: unknown) => e));
      await sleep(13);
    }
    await Promise.all(manual);
    await sleep(150);
    await scheduler.stop();
    expect(maxInFlight).toBe(1);
    expect(errors).toHaveLength(1);
    expect(passes).toBeGreaterThan(5);
    expect(scheduler.state().lastError).toBeNull();
  });

  it('stop() waits for the pass in flight', async () => {
    let finished = false;
    const scheduler = createScheduler<number>({
      intervalMs: 60_000,
      log: silent,
      async runPass() {
        await sleep(150);
        finished = true;
        return { stats: 1, nextDueAt: null };
      },
    });
    scheduler.start();
    await sleep(10);
    await scheduler.stop();
    expect(finished).toBe(true);
  });

  it('counts the interval from the start of a pass (a failed one: from its end)', async () => {
    let clock = 10_000;
    let fail = false;
    const scheduler = createScheduler<number>({
      intervalMs: 1000,
      log: silent,
      now: () => clock,
      onError: () => undefined,
      async runPass() {
        clock += 300; // the pass takes 300 ms
        if (fail) throw new Error('database went away');
        return { stats: 1, nextDueAt: null };
      },
    });
    scheduler.start();
    await sleep(10);
    expect(Date.parse(scheduler.state().nextWakeAt!)).toBe(11_000);
    // A pass longer than the interval: the next one follows at once.
    let slowPasses = 0;
    const slow = createScheduler<number>({
      intervalMs: 200,
      log: silent,
      now: () => clock,
      async runPass() {
        clock += 300;
        slowPasses++;
        return { stats: 1, nextDueAt: null };
      },
    });
    slow.start();
    await sleep(50);
    await slow.stop();
    expect(slowPasses).toBeGreaterThanOrEqual(2); // with 200 ms from each pass's end, 50 ms would hold one
    fail = true;
    clock = 30_000;
    await scheduler.runOnce().catch(() => undefined);
    expect(Date.parse(scheduler.state().nextWakeAt!)).toBe(31_300);
    await scheduler.stop();
  });

  it('wakes at the earliest nextDueAt, not at the interval', async () => {
    const times: number[] = [];
    const t0 = Date.now();
    const scheduler = createScheduler<number>({
      intervalMs: 60_000,
      log: silent,
      async runPass() {
        times.push(Date.now() - t0);
        return { stats: times.length, nextDueAt: times.length === 1 ? new Date(t0 + 300) : null };
      },
    });
    scheduler.start();
    await sleep(700);
    await scheduler.stop();
    expect(times).toHaveLength(2);
    expect(times[1]).toBeGreaterThanOrEqual(295);
    expect(times[1]).toBeLessThan(1000);
  });
});
