/** Fakes shared by the web-client tests (node has no Web Locks, IndexedDB or browser WebSocket). */
import { vi } from 'vitest';
import type { LockManagerLike } from '../../web-client/src/lib/locks.js';
import type { OccurrenceApi, ClaimOutcome } from '../../web-client/src/lib/occurrences.js';

/** Web Locks with `ifAvailable` semantics, in memory. */
export function fakeLocks(): LockManagerLike & { held: Set<string> } {
  const held = new Set<string>();
  const request = (async (name: string, options: LockOptions, callback: (lock: Lock | null) => unknown) => {
    if (held.has(name)) {
      if (options.ifAvailable) return callback(null);
      throw new Error('fake locks only support ifAvailable');
    }
    held.add(name);
    try {
      return await callback({ name, mode: 'exclusive' } as Lock);
    } finally {
      held.delete(name);
    }
  }) as LockManagerLike['request'];
  return { request, held };
}

export interface FakeOccurrences extends OccurrenceApi {
  calls: string[];
}

type Script = ClaimOutcome | (() => ClaimOutcome);
const answer = (s: Script) => (typeof s === 'function' ? s() : s);

/** Occurrence endpoints answering from a script (complete and release accepted unless scripted). */
export function fakeOccurrences(claim: Script, opts: { complete?: Script; release?: Script } = {}): FakeOccurrences {
  const calls: string[] = [];
  const ok: ClaimOutcome = { kind: 'granted' };
  return {
    calls,
    async claim(id) {
      calls.push(`claim ${id}`);
      return answer(claim);
    },
    async complete(id) {
      calls.push(`complete ${id}`);
      return answer(opts.complete ?? ok);
    },
    async release(id, code, note) {
      calls.push(`release ${id} ${code}${note ? ` ${note}` : ''}`);
      return answer(opts.release ?? ok);
    },
  };
}

/** A minimal WebSocket double driven by the test. */
export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
  closed: { code?: number; reason?: string } | null = null;
  onopen: ((ev: Event) => unknown) | null = null;
  onmessage: ((ev: MessageEvent) => unknown) | null = null;
  onerror: ((ev: Event) => unknown) | null = null;
  onclose: ((ev: CloseEvent) => unknown) | null = null;
  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this);
  }
  static last(): FakeWebSocket {
    const ws = FakeWebSocket.instances.at(-1);
    if (!ws) throw new Error('no socket opened');
    return ws;
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(code?: number, reason?: string): void {
    this.closed = { ...(code === undefined ? {} : { code }), ...(reason === undefined ? {} : { reason }) };
    this.readyState = 3;
  }
  // Test drivers
  open(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }
  receive(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) } as MessageEvent);
  }
  serverClose(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason } as CloseEvent);
  }
}

/** A dev-style unsigned JWT for `sub` (the client reads `sub` to key its records, never verifies). */
export function fakeJwt(sub: string, exp = Math.floor(Date.now() / 1000) + 900): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp })}.sig`;
}

/**
 * With fake timers: lets the client open its socket, opens it and answers
 * auth-ok (`extra` adds fields, e.g. the token's expiry); `given` picks a
 * socket other than the last one opened.
 */
export async function authenticateFake(extra: Record<string, unknown> = {}, given?: FakeWebSocket): Promise<FakeWebSocket> {
  await vi.advanceTimersByTimeAsync(0);
  const ws = given ?? FakeWebSocket.last();
  ws.open();
  ws.receive({ type: 'auth-ok', userId: 'u-1', deviceId: 'dev-1', ...extra });
  await vi.advanceTimersByTimeAsync(0);
  return ws;
}
