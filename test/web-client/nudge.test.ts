import { describe, expect, it } from 'vitest';
import { parseServerFrame } from '../../web-client/src/lib/frames.js';
import { isUuid, parseNudge } from '../../web-client/src/lib/nudge.js';
import { parseNudgeText } from '../../web-client/src/lib/push-payload.js';
import { joinUrl, webSocketUrl } from '../../web-client/src/lib/url.js';

const ITERATION = '6a061268-1c1b-5d2e-a3f4-0123456789ab';
const nudge = { type: 'mission-due', missionId: 'm-1', iterationId: ITERATION, dueAt: '2026-11-25T10:00:00.000Z' };

describe('parseNudge', () => {
  it('accepts a mission-due nudge and drops unknown fields', () => {
    expect(parseNudge({ ...nudge, extra: 1 })).toEqual(nudge);
    expect(parseNudgeText(JSON.stringify(nudge))).toEqual(nudge);
  });

  it('rejects anything else without throwing', () => {
    expect(parseNudge(null)).toBeNull();
    expect(parseNudge([nudge])).toBeNull();
    expect(parseNudge({ ...nudge, type: 'other' })).toBeNull();
    expect(parseNudge({ ...nudge, iterationId: 'not-a-uuid' })).toBeNull();
    expect(parseNudge({ ...nudge, missionId: '' })).toBeNull();
    expect(parseNudge({ ...nudge, dueAt: 5 })).toBeNull();
    expect(parseNudgeText('garbage')).toBeNull();
    expect(parseNudgeText('')).toBeNull();
  });

  it('knows a UUID', () => {
    expect(isUuid(ITERATION)).toBe(true);
    expect(isUuid(ITERATION.toUpperCase())).toBe(true);
    expect(isUuid(`${ITERATION}0`)).toBe(false);
  });
});

describe('parseServerFrame', () => {
  it('parses every server frame type', () => {
    expect(parseServerFrame('{"type":"auth-ok","userId":"u","deviceId":"d"}')).toEqual({ type: 'auth-ok', userId: 'u', deviceId: 'd' });
    expect(parseServerFrame(JSON.stringify(nudge))).toEqual(nudge);
    expect(parseServerFrame('{"type":"pong"}')).toEqual({ type: 'pong' });
    expect(parseServerFrame('{"type":"claim-result","iterationId":"x","granted":false,"reason":"held"}')).toEqual({
      type: 'claim-result',
      iterationId: 'x',
      granted: false,
      reason: 'held',
    });
    expect(parseServerFrame('{"type":"error","code":"bad_frame","message":"no"}')).toEqual({ type: 'error', code: 'bad_frame', message: 'no' });
  });

  it('returns null for unknown or malformed frames', () => {
    expect(parseServerFrame('{"type":"surprise"}')).toBeNull();
    expect(parseServerFrame('{"type":"auth-ok"}')).toBeNull();
    expect(parseServerFrame('{"type":"claim-result","iterationId":"x"}')).toBeNull();
    expect(parseServerFrame('[1,2]')).toBeNull();
    expect(parseServerFrame('{')).toBeNull();
  });
});

describe('urls', () => {
  it('maps http(s) to ws(s) and keeps a path prefix', () => {
    expect(webSocketUrl('http://localhost:3066')).toBe('ws://localhost:3066/v1/ws');
    expect(webSocketUrl('https://ai.example/')).toBe('wss://ai.example/v1/ws');
    expect(webSocketUrl('https://x.example/mana-ai/')).toBe('wss://x.example/mana-ai/v1/ws');
    expect(joinUrl('https://x.example/mana-ai', '/v1/occurrences')).toBe('https://x.example/mana-ai/v1/occurrences');
    expect(joinUrl('http://localhost:3066/?q=1#h', 'v1/x')).toBe('http://localhost:3066/v1/x');
    // A query on the path stays a query (assigned to pathname, its ? was escaped into the path).
    expect(joinUrl('https://x.example/mana-ai/', '/v1/occurrences?deviceId=a%2Fb')).toBe('https://x.example/mana-ai/v1/occurrences?deviceId=a%2Fb');
    // A query in the path stays a query (it was escaped into the path as %3F).
    expect(joinUrl('https://x.example/mana-ai', '/v1/occurrences?deviceId=d&contextId=t')).toBe('https://x.example/mana-ai/v1/occurrences?deviceId=d&contextId=t');
  });
});
