/**
 * One wake-up per user per burst: the server groups a user's nudges due
 * together into one push message (src/nudge/push-payload.ts), the service
 * worker reads every nudge it names (and still reads the old single-nudge
 * payload), plans them all within the one push event and shows one
 * notification saying how many were planned.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pushMessages } from '../../src/nudge/push-payload.js';
import { MAX_PAYLOAD_BYTES } from '../../src/nudge/push-options.js';
import { PushNudgePayload, type MissionDue } from '../../src/nudge/protocol.js';
import { parseNudgeText, parsePushNudges } from '../../web-client/src/lib/push-payload.js';
import { batchNotificationBody, handlePush } from '../../web-client/src/sw.js';
import { createMemoryDedupStore } from '../../web-client/src/lib/dedup.js';
import type { FetchLike } from '../../web-client/src/lib/http.js';

const frame = (i: number): MissionDue => ({
  type: 'mission-due',
  missionId: `mission-${i}`,
  iterationId: `6a061268-1c1b-5d2e-a3f4-${String(i).padStart(12, '0')}`,
  dueAt: '2026-11-25T10:00:00.000000Z',
});

describe('push messages (server side)', () => {
  it('keeps the plain single-nudge payload for one occurrence', () => {
    const [only, ...rest] = pushMessages([frame(1)]);
    expect(rest).toEqual([]);
    expect(only!.payload).toEqual(frame(1));
  });

  it('names every occurrence of a user due together in one message, the first repeated at the top level', () => {
    const messages = pushMessages([frame(1), frame(2), frame(3)]);
    expect(messages).toHaveLength(1);
    const { payload } = messages[0]!;
    expect(PushNudgePayload.parse(payload)).toEqual(payload);
    expect(payload).toMatchObject(frame(1));
    expect(payload.missions?.map((m) => m.iterationId)).toEqual([frame(1), frame(2), frame(3)].map((f) => f.iterationId));
    // A worker that reads only the single shape still plans the first; a new one plans all three.
    expect(parseNudgeText(JSON.stringify(payload))).toEqual(frame(1));
    expect(parsePushNudges(JSON.stringify(payload))).toEqual([frame(1), frame(2), frame(3)]);
  });

  it('splits more than fit in one encrypted record over several messages, each under the limit, none lost', () => {
    const frames = Array.from({ length: 120 }, (_, i) => frame(i));
    const messages = pushMessages(frames);
    expect(messages.length).toBeGreaterThan(1);
    for (const m of messages) expect(Buffer.byteLength(JSON.stringify(m.payload))).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    const named = messages.flatMap((m) => parsePushNudges(JSON.stringify(m.payload)).map((n) => n.iterationId));
    expect(named).toEqual(frames.map((f) => f.iterationId));
    expect(new Set(messages.map((m) => m.topic)).size).toBe(messages.length);
  });
});

describe('parsePushNudges (worker side)', () => {
  it('reads the old single payload, drops malformed or repeated entries, and never throws', () => {
    expect(parsePushNudges(JSON.stringify(frame(1)))).toEqual([frame(1)]);
    const messy = { ...frame(1), missions: [frame(1), { missionId: 'x', iterationId: 'not-a-uuid', dueAt: 'x' }, frame(2), frame(2), 'junk'] };
    expect(parsePushNudges(JSON.stringify(messy))).toEqual([frame(1), frame(2)]);
    expect(parsePushNudges(JSON.stringify({ ...frame(1), missions: [] }))).toEqual([frame(1)]);
    expect(parsePushNudges('garbage')).toEqual([]);
    expect(parsePushNudges(JSON.stringify({ missions: [frame(1)] }))).toEqual([]);
  });

  it('says how many of a batch were planned', () => {
    const planned = { kind: 'planned', completed: true } as const;
    expect(batchNotificationBody([planned, planned, planned])).toBe('3 missions planned — proposals ready');
    expect(batchNotificationBody([planned, { kind: 'locked' }])).toBe('1 of 2 missions planned — open to see the rest');
    expect(batchNotificationBody([{ kind: 'notified' }, { kind: 'notified' }])).toBe('2 missions due — open to plan');
  });
});

describe('handlePush with a push naming three missions', () => {
  const g = globalThis as unknown as Record<string, unknown>;
  afterEach(() => {
    delete g['registration'];
    delete g['location'];
  });

  it('claims, plans and completes each once, and shows one notification for all three', async () => {
    const shown: { title: string; options: NotificationOptions }[] = [];
    g['registration'] = { scope: 'https://app.test/', showNotification: async (title: string, options: NotificationOptions) => void shown.push({ title, options }) };
    g['location'] = { origin: 'https://app.test' };
    const calls: string[] = [];
    const fetch: FetchLike = async (input, init) => {
      const [, , , id, action] = new URL(input).pathname.split('/');
      calls.push(`${action}:${id}`);
      expect(init?.method).toBe('POST');
      return Response.json(action === 'claim' ? { granted: true, leaseExpiresAt: '2026-11-25T10:10:00.000Z' } : { ok: true });
    };
    const planned: string[] = [];
    const frames = [frame(1), frame(2), frame(3)];
    let work: Promise<unknown> | undefined;
    const event = {
      data: { text: () => JSON.stringify(pushMessages(frames)[0]!.payload) },
      waitUntil: (p: Promise<unknown>) => void (work = p),
    } as unknown as PushEvent;
    handlePush(event, {
      getToken: async () => 'token',
      deviceId: 'phone',
      fetch,
      dedup: createMemoryDedupStore(),
      locks: null,
      title: 'Mana',
      planInWorker: async (missionId, iterationId) => {
        planned.push(`${missionId}:${iterationId}`);
        return { steps: 2 };
      },
    });
    await work;
    expect(planned).toEqual(frames.map((f) => `${f.missionId}:${f.iterationId}`));
    expect(calls.sort()).toEqual(frames.flatMap((f) => [`claim:${f.iterationId}`, `complete:${f.iterationId}`]).sort());
    expect(shown).toHaveLength(1);
    expect(shown[0]!.options.body).toBe('3 missions planned — proposals ready');
    expect(shown[0]!.options.data).toMatchObject({ missionId: 'mission-1', iterationIds: frames.map((f) => f.iterationId), planned: 3, outcome: 'planned' });
  });
});
