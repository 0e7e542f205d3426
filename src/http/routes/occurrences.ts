/**
 * Occurrence routes: device claims (user JWT) and the operator listing
 * (service key). Every route declares its request and response with zod.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Sql } from '../../db/pool.js';
import { createRouteGroup } from '../app.js';
import { AppError } from '../errors.js';
import { requireServiceKey } from '../service-auth.js';
import { requireUser, type UserEnv } from '../user-gate.js';
import type { UserAuth } from '../../auth/user-auth.js';
import { CLAIM_HTTP_STATUS, type ClaimOutcome, type ClaimService } from '../../schedule/claims.js';
import { listOccurrences } from '../../schedule/occurrences.js';
import type { Occurrence } from '../../schedule/occurrence.js';
import { ContextId, DeviceId } from '../../nudge/protocol.js';
import { claimantOf, isHeldBy } from '../../schedule/claimant.js';
import { publicReason, REASONS, RELEASE_CODES, type ReasonCode, type ReleaseCode } from '../../schedule/reasons.js';
import type { RateLimiter } from '../rate-limit.js';
import { ErrorSchema } from './schemas.js';

const Status = z.enum(['created', 'nudged', 'claimed', 'planning', 'waiting', 'planned', 'completed', 'superseded', 'failed']);
const Reason = z.object({ code: z.enum(Object.keys(REASONS) as [ReasonCode, ...ReasonCode[]]), message: z.string() });

/** What users and operators both see of an occurrence. */
const OccurrenceCommon = z.object({
  iterationId: z.string().uuid(),
  userId: z.string(),
  missionId: z.string(),
  dueAt: z.string(),
  status: Status,
  channel: z.enum(['ws', 'push', 'server']).nullable(),
  deadlineAt: z.string().nullable(),
  leaseExpiresAt: z.string().nullable(),
  /** Planning attempts (PLANNER_MAX_ATTEMPTS bounds these). */
  attempts: z.number().int(),
  /** Times it was offered to devices; nudges carry it as `attempt` (a higher one is a re-offer). */
  offers: z.number().int(),
});

/**
 * An occurrence as its user sees it: who holds it only as a kind of party,
 * and why it is where it is as a code with a fixed message (the operators'
 * detail can name hosts, devices or an LLM reply).
 */
export const OccurrenceSchema = OccurrenceCommon.extend({
  claimedBy: z.enum(['device', 'server']).nullable(),
  /** True when the claimant named in the request holds it: `deviceId` and `contextId`, or the device in any context. */
  mine: z.boolean(),
  reason: Reason.nullable(),
}).openapi('Occurrence');

/** The operators' view: every column, the detail included. */
export const OperatorOccurrenceSchema = OccurrenceCommon.extend({
  claimedBy: z.string().nullable(),
  /** Times it was routed again after waiting for a device. */
  routeAttempts: z.number().int(),
  reason: z.string().nullable(),
  lastError: z.string().nullable(),
}).openapi('OperatorOccurrence');

const partyOf = (claimedBy: string | null): 'device' | 'server' | null =>
  claimedBy === null ? null : claimedBy.startsWith('server:') ? 'server' : 'device';

const common = (o: Occurrence) => ({
  iterationId: o.iterationId,
  userId: o.userId,
  missionId: o.missionId,
  dueAt: o.dueAt,
  status: o.status,
  channel: o.channel,
  deadlineAt: o.deadlineAt,
  leaseExpiresAt: o.leaseExpiresAt,
  attempts: o.attempts,
  offers: o.offers,
});

const toPublic = (o: Occurrence, deviceId: string | undefined, contextId: string | undefined) => ({
  ...common(o),
  claimedBy: partyOf(o.claimedBy),
  mine: deviceId !== undefined && isHeldBy(o.claimedBy, deviceId, contextId),
  reason: publicReason(o.reason),
});

const toOperator = (o: Occurrence) => ({
  ...common(o),
  claimedBy: o.claimedBy,
  routeAttempts: o.routeAttempts,
  reason: o.reason,
  lastError: o.lastError,
});

const IterationParam = z.object({ iterationId: z.string().uuid().openapi({ param: { name: 'iterationId', in: 'path' } }) });
/** `contextId` names the tab or worker claiming: another context of the same device is refused like another device. */
const DeviceBody = z.object({ deviceId: DeviceId, contextId: ContextId.optional() });
const ReleaseBody = DeviceBody.extend({
  /** Why, from a fixed set (never the planner's text); its user sees the matching reason. */
  code: z.enum(Object.keys(RELEASE_CODES) as [ReleaseCode, ...ReleaseCode[]]).optional(),
  /** A short note for operators. */
  reason: z.string().max(500).optional(),
});
/** `leaseMs`: the lease left, by the server's clock, so a device with a skewed clock renews in time. */
const ClaimGranted = z.object({ granted: z.literal(true), leaseExpiresAt: z.string(), leaseMs: z.number().int() }).openapi('ClaimGranted');
const Done = z.object({ ok: z.literal(true), status: z.string() });

const errorResponses = {
  400: { description: 'invalid request', content: { 'application/json': { schema: ErrorSchema } } },
  401: { description: 'missing or invalid token', content: { 'application/json': { schema: ErrorSchema } } },
  403: { description: "another user's occurrence", content: { 'application/json': { schema: ErrorSchema } } },
  404: { description: 'unknown occurrence', content: { 'application/json': { schema: ErrorSchema } } },
  409: { description: 'held by another device or the server', content: { 'application/json': { schema: ErrorSchema } } },
  410: { description: 'already completed, planned or superseded', content: { 'application/json': { schema: ErrorSchema } } },
  429: { description: 'rate limited', content: { 'application/json': { schema: ErrorSchema } } },
} as const;

const MESSAGES: Record<Exclude<ClaimOutcome['kind'], 'granted'>, string> = {
  'not-found': 'no occurrence with this iterationId',
  forbidden: 'this occurrence belongs to another user',
  held: 'the occurrence is held by another party',
  gone: 'the occurrence is already done',
  'not-holder': 'this device does not hold the occurrence',
};

function refuse(out: Exclude<ClaimOutcome, { kind: 'granted' }>): never {
  const detail = out.kind === 'held' ? ` (${out.by})` : out.kind === 'gone' ? ` (${out.status})` : '';
  throw new AppError(CLAIM_HTTP_STATUS[out.kind], out.kind, `${MESSAGES[out.kind]}${detail}`);
}

export interface OccurrenceRouteDeps {
  sql: Sql;
  auth: UserAuth;
  claims: ClaimService;
  serviceKey: string;
  limiter: RateLimiter;
}

export function mountOccurrences(app: OpenAPIHono, deps: OccurrenceRouteDeps): void {
  const user = createRouteGroup<UserEnv>();
  // Path-scoped: a '*' middleware on a group mounted at '/' would gate every route.
  user.use('/v1/occurrences', requireUser(deps.auth));
  user.use('/v1/occurrences/*', requireUser(deps.auth));
  user.use('/v1/occurrences/*', deps.limiter.middleware('claims'));

  user.openapi(
    createRoute({
      method: 'post',
      path: '/v1/occurrences/{iterationId}/claim',
      summary: 'Claim an occurrence for this device (first claim wins)',
      security: [{ bearer: [] }],
      request: { params: IterationParam, body: { content: { 'application/json': { schema: DeviceBody } }, required: true } },
      responses: { 200: { description: 'granted', content: { 'application/json': { schema: ClaimGranted } } }, ...errorResponses },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const out = await deps.claims.claim({ iterationId: c.req.valid('param').iterationId, userId: c.get('userId'), deviceId: claimantOf(body.deviceId, body.contextId) });
      if (out.kind !== 'granted') refuse(out);
      const leaseMs = Math.max(0, Date.parse(out.leaseExpiresAt) - Date.now());
      return c.json({ granted: true as const, leaseExpiresAt: out.leaseExpiresAt, leaseMs }, 200);
    },
  );

  user.openapi(
    createRoute({
      method: 'post',
      path: '/v1/occurrences/{iterationId}/complete',
      summary: 'Mark a claimed occurrence completed (lease holder only)',
      security: [{ bearer: [] }],
      request: { params: IterationParam, body: { content: { 'application/json': { schema: DeviceBody } }, required: true } },
      responses: { 200: { description: 'completed', content: { 'application/json': { schema: Done } } }, ...errorResponses },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const out = await deps.claims.complete({ iterationId: c.req.valid('param').iterationId, userId: c.get('userId'), deviceId: claimantOf(body.deviceId, body.contextId) });
      if (out.kind !== 'granted') refuse(out);
      return c.json({ ok: true as const, status: out.occurrence.status }, 200);
    },
  );

  user.openapi(
    createRoute({
      method: 'post',
      path: '/v1/occurrences/{iterationId}/release',
      summary: 'Give a claimed occurrence back; the server falls back at once',
      security: [{ bearer: [] }],
      request: { params: IterationParam, body: { content: { 'application/json': { schema: ReleaseBody } }, required: true } },
      responses: { 200: { description: 'released', content: { 'application/json': { schema: Done } } }, ...errorResponses },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const out = await deps.claims.release({
        iterationId: c.req.valid('param').iterationId,
        userId: c.get('userId'),
        deviceId: claimantOf(body.deviceId, body.contextId),
        ...(body.reason === undefined ? {} : { reason: body.reason }),
        ...(body.code === undefined ? {} : { code: body.code }),
      });
      if (out.kind !== 'granted') refuse(out);
      return c.json({ ok: true as const, status: out.occurrence.status }, 200);
    },
  );

  user.openapi(
    createRoute({
      method: 'get',
      path: '/v1/occurrences',
      summary: "The caller's own occurrences, newest first",
      security: [{ bearer: [] }],
      request: { query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50), deviceId: DeviceId.optional(), contextId: ContextId.optional() }) },
      responses: {
        200: { description: 'occurrences', content: { 'application/json': { schema: z.array(OccurrenceSchema) } } },
        400: errorResponses[400],
        401: errorResponses[401],
      },
    }),
    async (c) => {
      const q = c.req.valid('query');
      const rows = await listOccurrences(deps.sql, { userId: c.get('userId'), limit: q.limit });
      return c.json(rows.map((o) => toPublic(o, q.deviceId, q.contextId)), 200);
    },
  );

  const internal = createRouteGroup();
  internal.use('/internal/*', requireServiceKey(deps.serviceKey));
  internal.openapi(
    createRoute({
      method: 'get',
      path: '/internal/occurrences',
      summary: 'Occurrences for operators, optionally of one user',
      request: { query: z.object({ userId: z.string().min(1).optional(), limit: z.coerce.number().int().min(1).max(10_000).default(500), open: z.enum(['true', 'false']).optional() }) },
      responses: { 200: { description: 'occurrences', content: { 'application/json': { schema: z.array(OperatorOccurrenceSchema) } } }, 401: errorResponses[401] },
    }),
    async (c) => {
      const q = c.req.valid('query');
      return c.json((await listOccurrences(deps.sql, { userId: q.userId, limit: q.limit, openOnly: q.open === 'true' })).map(toOperator), 200);
    },
  );

  app.route('/', user);
  app.route('/', internal);
}
