/**
 * The WebSocket protocol of `GET /v1/ws`, for browsers. The frame TYPES come
 * from the server's zod schemas (type-only import, erased at build time, so
 * the bundle never pulls in zod); the few VALUES are copied here and a unit
 * test (test/web-client/protocol.test.ts) keeps them equal to the server's.
 */
export type { ClientFrame, ServerFrame, MissionDue, MissionChanged, ClaimResult, PushNudge } from '../../src/nudge/protocol.js';

/** Frames larger than this are refused by the server (close 1009). */
export const MAX_FRAME_BYTES = 16 * 1024;
/** A socket must send its auth frame within this many ms or it is closed. */
export const AUTH_TIMEOUT_MS = 5_000;

/** Close codes the server uses, so a client can tell why it was closed. */
export const CLOSE_CODES = {
  authTimeout: 4408,
  authFailed: 4401,
  protocolError: 4400,
  tooManySockets: 4429,
  shuttingDown: 1001,
  tooBig: 1009,
} as const;
