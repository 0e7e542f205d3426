/**
 * The notifier of server writes: this instance's sockets hear at once; the
 * writes of one short window go to other instances in one publish, only for users
 * with a socket there; a failing presence lookup or publish is logged, not
 * thrown; drain() waits for what is in flight.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { createMissionChangeNotifier } from '../../src/nudge/mission-changes.js';
import type { MissionChange } from '../../src/nudge/nudge-bus.js';

function setup(opts: { remote?: string[]; failLookup?: boolean; failPublish?: boolean; batchMs?: number } = {}) {
  const local: [string, unknown][] = [];
  const published: MissionChange[][] = [];
  const lookups: string[][] = [];
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, new Writable({ write: (c: Buffer, _e, done) => (lines.push(c.toString()), done()) }));
  const notifier = createMissionChangeNotifier({
    deliverLocal: (userId, frame) => (local.push([userId, frame]), 1),
    elsewhere: async (userIds) => {
      lookups.push(userIds);
      if (opts.failLookup) throw new Error('database away');
      return new Set(userIds.filter((u) => (opts.remote ?? []).includes(u)));
    },
    publish: async (changes) => {
      if (opts.failPublish) throw new Error('notify failed');
      published.push(changes);
    },
    log,
    ...(opts.batchMs !== undefined ? { batchMs: opts.batchMs } : {}),
  });
  return { notifier, local, published, lookups, lines };
}

describe('mission-changed notifier', () => {
  it('delivers locally at once, and sends one batch per window to other instances, for their users only', async () => {
    const { notifier, local, published, lookups } = setup({ remote: ['bob'] });
    notifier.notify({ userId: 'alice', missionId: 'm1', iterationId: '11111111-1111-5111-8111-111111111111' });
    notifier.notify({ userId: 'bob', missionId: 'm2', iterationId: '22222222-2222-5222-8222-222222222222' });
    notifier.notify({ userId: 'bob', missionId: 'm3' });
    expect(local).toEqual([
      ['alice', { type: 'mission-changed', missionId: 'm1', iterationId: '11111111-1111-5111-8111-111111111111' }],
      ['bob', { type: 'mission-changed', missionId: 'm2', iterationId: '22222222-2222-5222-8222-222222222222' }],
      ['bob', { type: 'mission-changed', missionId: 'm3' }],
    ]);
    expect(published).toEqual([]);
    await notifier.drain();
    expect(lookups).toEqual([['alice', 'bob']]);
    expect(published).toEqual([
      [
        { userId: 'bob', frame: { type: 'mission-changed', missionId: 'm2', iterationId: '22222222-2222-5222-8222-222222222222' } },
        { userId: 'bob', frame: { type: 'mission-changed', missionId: 'm3' } },
      ],
    ]);
  });

  it('writes finishing on different turns within the window share one lookup; a later one gets its own', async () => {
    const { notifier, lookups, local } = setup({ batchMs: 50 });
    notifier.notify({ userId: 'alice', missionId: 'm1' });
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    notifier.notify({ userId: 'bob', missionId: 'm2' });
    expect(local).toHaveLength(2);
    expect(lookups).toEqual([]);
    await new Promise((r) => setTimeout(r, 150));
    expect(lookups).toEqual([['alice', 'bob']]);
    notifier.notify({ userId: 'carol', missionId: 'm3' });
    await notifier.drain();
    expect(lookups).toEqual([['alice', 'bob'], ['carol']]);
  });

  it('publishes nothing when no user has a socket elsewhere', async () => {
    const { notifier, published, lookups } = setup();
    notifier.notify({ userId: 'alice', missionId: 'm1' });
    await notifier.drain();
    expect(lookups).toHaveLength(1);
    expect(published).toEqual([]);
  });

  it.each([
    ['the presence lookup', { failLookup: true }],
    ['the publish', { failPublish: true, remote: ['alice'] }],
  ])('a failing %s is logged, never thrown', async (_name, opts) => {
    const { notifier, local, lines } = setup(opts);
    notifier.notify({ userId: 'alice', missionId: 'm1' });
    await notifier.drain();
    expect(local).toHaveLength(1);
    expect(lines.join('')).toContain('mission-changed not passed to other instances');
  });
});
