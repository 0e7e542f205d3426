/** Fakes shared by the web-client tests (node has no Web Locks, IndexedDB or browser WebSocket). */
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

/** Occurrence endpoints answering from a script. */
export function fakeOccurrences(claim: ClaimOutcome | (() => ClaimOutcome), opts: { completeFails?: boolean } = {}): FakeOccurrences {
  const calls: string[] = [];
  return {
    calls,
    async claim(id) {
      calls.push(`claim ${id}`);
      return typeof claim === 'function' ? claim() : claim;
    },
    async complete(id) {
      calls.push(`complete ${id}`);
      if (opts.completeFails) throw new Error('complete: 500');
    },
    async release(id, reason) {
      calls.push(`release ${id} ${reason ?? ''}`.trim());
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
