/**
 * A TCP proxy in front of Postgres that holds every answer back for a
 * fixed delay and counts what the client waited for: a round trip is a
 * client send after an answer reached it (statements pipelined in one send,
 * or sent one after another before any answer came back, are one), and
 * each Parse message is a statement prepared on the server. Round trips
 * add up over the connections; the depth is the longest chain of them,
 * one after another: what the client waited for when it used several
 * connections at once.
 *
 * The delay makes the count deterministic: nothing the client sends
 * without waiting can be overtaken by an answer, so a send after an answer
 * really was made after (and, in a test with nothing else on the pool,
 * because of) that answer.
 */
import { createServer, connect, type Socket } from 'node:net';

export interface RoundTripProxy {
  /** The target URL with its host and port replaced by the proxy's. */
  url: string;
  /** Starts counting afresh (the next send of every connection counts as one). */
  reset(): void;
  /** Round trips since reset, summed over the connections. */
  roundTrips(): number;
  /** Round trips since reset one after another, at most: each send is one deeper than the deepest answer it came after. */
  depth(): number;
  /** Parse messages since reset (statements prepared on the server). */
  parses(): number;
  close(): Promise<void>;
}

/** Startup-phase requests without a type byte: SSLRequest, GSSENCRequest. */
const NEGOTIATION_CODES = new Set([80877103, 80877104]);

interface Counted {
  /** An answer reached the client since its last send: its next send is a new round trip. */
  answered: boolean;
  /** The client's startup message went through: every later message has a type byte. */
  started: boolean;
  /** The depth of this connection's last send, which its answers carry. */
  sendDepth: number;
  pending: Buffer;
}

export async function startRoundTripProxy(targetUrl: string, opts: { delayMs: number }): Promise<RoundTripProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  const states = new Set<Counted>();
  let roundTrips = 0;
  let parses = 0;
  /** The deepest answer delivered since reset, and the deepest send. */
  let deliveredDepth = 0;
  let depth = 0;

  /** Counts the Parse messages among the client's complete messages, keeping an incomplete tail. */
  function countMessages(state: Counted, chunk: Buffer): void {
    let buf = state.pending.length > 0 ? Buffer.concat([state.pending, chunk]) : chunk;
    for (;;) {
      if (!state.started) {
        if (buf.length < 8) break;
        const len = buf.readInt32BE(0);
        if (buf.length < len) break;
        if (!NEGOTIATION_CODES.has(buf.readInt32BE(4))) state.started = true;
        buf = buf.subarray(len);
        continue;
      }
      if (buf.length < 5) break;
      const len = buf.readInt32BE(1);
      if (buf.length < 1 + len) break;
      if (buf[0] === 0x50) parses++; // 'P'
      buf = buf.subarray(1 + len);
    }
    state.pending = Buffer.from(buf);
  }

  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    const state: Counted = { answered: true, started: false, sendDepth: 0, pending: Buffer.alloc(0) };
    states.add(state);
    sockets.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', (chunk) => {
      if (state.answered) roundTrips++;
      state.answered = false;
      state.sendDepth = deliveredDepth + 1;
      depth = Math.max(depth, state.sendDepth);
      countMessages(state, chunk);
      upstream.write(chunk);
    });
    // Same delay for every chunk: timers of equal delay fire in order, so answers keep theirs.
    upstream.on('data', (chunk) => {
      const answers = state.sendDepth;
      setTimeout(() => {
        if (client.destroyed) return;
        state.answered = true;
        deliveredDepth = Math.max(deliveredDepth, answers);
        client.write(chunk);
      }, opts.delayMs);
    });
    const end = () => {
      states.delete(state);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', () => setTimeout(end, opts.delayMs)).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error(`round-trip proxy: expected a TCP address, got ${String(address)}`);
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String(address.port);

  return {
    url: url.toString(),
    reset() {
      roundTrips = 0;
      parses = 0;
      deliveredDepth = 0;
      depth = 0;
      for (const s of states) {
        s.answered = true;
        s.sendDepth = 0;
      }
    },
    roundTrips: () => roundTrips,
    depth: () => depth,
    parses: () => parses,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
