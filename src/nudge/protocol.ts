/**
 * The WebSocket protocol at `GET /v1/ws`, as zod schemas. The server parses
 * every client frame with these; `web-client/` imports the inferred types
 * (type-only, so the browser bundle stays dependency-free).
 */
import { z } from 'zod';

/** Frames larger than this are refused by the server (close 1009). */
export const MAX_FRAME_BYTES = 16 * 1024;
/** A socket must authenticate within this many ms or it is closed (4401). */
export const AUTH_TIMEOUT_MS = 5_000;

/** Close codes the server uses, so clients can tell why. */
export const CLOSE_CODES = {
  authTimeout: 4408,
  authFailed: 4401,
  protocolError: 4400,
  tooManySockets: 4429,
  shuttingDown: 1001,
  tooBig: 1009,
} as const;

const deviceId = z.string().min(1).max(128).regex(/^[A-Za-z0-9._:-]+$/, 'deviceId: letters, digits and . _ : - only');
/** One browsing context (a tab, the service worker) of a device: claims are granted per context. */
const contextId = z.string().min(1).max(64).regex(/^[A-Za-z0-9._:-]+$/, 'contextId: letters, digits and . _ : - only');
/** An IANA time zone as the device reports it; the server canonicalises it with Intl before use. */
const timeZone = z.string().min(1).max(64);
const uuid = z.string().uuid();
const token = z.string().min(1).max(8192);

export const AuthFrame = z.object({
  type: z.literal('auth'),
  token,
  deviceId,
  contextId: contextId.optional(),
  timeZone: timeZone.optional(),
});
/** A fresh token for the same user, sent before the current one expires. */
export const ReauthFrame = z.object({ type: z.literal('reauth'), token });
export const ClaimFrame = z.object({ type: z.literal('claim'), iterationId: uuid });
export const PingFrame = z.object({ type: z.literal('ping') });

export const ClientFrame = z.discriminatedUnion('type', [AuthFrame, ReauthFrame, ClaimFrame, PingFrame]);
export type ClientFrame = z.infer<typeof ClientFrame>;

/**
 * `expiresAt`: when the socket's token expires (ISO); the socket is closed
 * (4401) then unless a `reauth` came first. `expiresInMs`: the same as time
 * left by the server's clock, which a client with a skewed clock can trust.
 */
export const AuthOkFrame = z.object({
  type: z.literal('auth-ok'),
  userId: z.string(),
  deviceId: z.string(),
  expiresAt: z.string().optional(),
  expiresInMs: z.number().int().min(0).optional(),
});
export const ReauthOkFrame = z.object({ type: z.literal('reauth-ok'), expiresAt: z.string().optional(), expiresInMs: z.number().int().min(0).optional() });
export const MissionDueFrame = z.object({
  type: z.literal('mission-due'),
  missionId: z.string(),
  iterationId: uuid,
  dueAt: z.string(),
  /**
   * How many times the server has offered this occurrence to devices (1 for
   * the first nudge). A higher number than a device has seen means the
   * server re-offered it (after a release, an expiry or a refusal): take it
   * again even if it was seen before.
   */
  attempt: z.number().int().min(1).optional(),
});
/**
 * Sent to the user's live sockets after the server wrote to a mission (a
 * server plan): the app pulls the mission now instead of at its next lazy pull.
 */
export const MissionChangedFrame = z.object({ type: z.literal('mission-changed'), missionId: z.string(), iterationId: uuid.optional() });
/**
 * A Web Push payload: a `mission-due` nudge, and when several occurrences of
 * the user fell due together, `missions` naming all of them (the first is
 * repeated at the top level, so a worker that reads only that still plans it).
 */
export const PushNudgePayload = MissionDueFrame.extend({
  missions: z.array(MissionDueFrame.omit({ type: true })).min(1).optional(),
});
export const ClaimResultFrame = z.object({
  type: z.literal('claim-result'),
  iterationId: z.string(),
  granted: z.boolean(),
  leaseExpiresAt: z.string().optional(),
  reason: z.string().optional(),
});
export const PongFrame = z.object({ type: z.literal('pong') });
export const ErrorFrame = z.object({ type: z.literal('error'), code: z.string(), message: z.string() });

export const ServerFrame = z.discriminatedUnion('type', [
  AuthOkFrame,
  ReauthOkFrame,
  MissionDueFrame,
  MissionChangedFrame,
  ClaimResultFrame,
  PongFrame,
  ErrorFrame,
]);
export type ServerFrame = z.infer<typeof ServerFrame>;
export type MissionChanged = z.infer<typeof MissionChangedFrame>;
export type MissionDue = z.infer<typeof MissionDueFrame>;
export type ClaimResult = z.infer<typeof ClaimResultFrame>;
export type PushNudge = z.infer<typeof PushNudgePayload>;

/** Shared by the WS frames and the HTTP routes. */
export const DeviceId = deviceId;
export const ContextId = contextId;
export const TimeZoneName = timeZone;
