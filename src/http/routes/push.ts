/**
 * Push routes: the VAPID public key, and a device's push subscription
 * (PUT is idempotent by endpoint; DELETE removes the device's ones). The
 * endpoint is a user-supplied URL the server will POST to: it passes the
 * SSRF guard at registration (and again at every send).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { createRouteGroup } from '../app.js';
import { AppError } from '../errors.js';
import { requireUser, type UserEnv } from '../user-gate.js';
import type { UserAuth } from '../../auth/user-auth.js';
import type { RateLimiter } from '../rate-limit.js';
import type { PushSubscriptionStore } from '../../devices/push-subscriptions.js';
import { checkPushEndpoint, type Allowlist, type Resolve } from '../../devices/endpoint-guard.js';
import { DeviceId, TimeZoneName } from '../../nudge/protocol.js';
import type { TimeZoneStore } from '../../devices/time-zones.js';
import type { Logger } from '../../log.js';
import { ErrorSchema } from './schemas.js';

const B64URL = /^[A-Za-z0-9_-]+={0,2}$/;
const bytesOf = (s: string) => Buffer.from(s, 'base64url');

export const PushSubscriptionJson = z
  .object({
    endpoint: z.string().url().max(2048),
    expirationTime: z.number().int().nonnegative().nullable().optional(),
    keys: z.object({
      p256dh: z
        .string()
        .regex(B64URL, 'keys.p256dh: expected base64url')
        .refine((s) => {
          const b = bytesOf(s);
          return b.length === 65 && b[0] === 0x04;
        }, 'keys.p256dh: expected base64url of a 65-byte uncompressed P-256 point'),
      auth: z
        .string()
        .regex(B64URL, 'keys.auth: expected base64url')
        .refine((s) => bytesOf(s).length === 16, 'keys.auth: expected base64url of 16 bytes'),
    }),
    /** The device's IANA zone (`Intl.DateTimeFormat().resolvedOptions().timeZone`); one Intl does not know is ignored. */
    timeZone: TimeZoneName.optional(),
  })
  .openapi('PushSubscriptionJSON');

const DeviceParam = z.object({ deviceId: DeviceId });

export interface PushRouteDeps {
  auth: UserAuth;
  store: PushSubscriptionStore;
  allowlist: Allowlist;
  resolve?: Resolve;
  /** Undefined when Web Push is off. */
  vapidPublicKey: string | undefined;
  limiter: RateLimiter;
  /** Called for every registration refused by the per-user cap. */
  onCapRefused?: (cap: 'push_per_user') => void;
  /** Where a reported time zone goes; a failure to store it never fails the registration. */
  timeZones?: Pick<TimeZoneStore, 'report'>;
  log?: Logger;
}

export function mountPush(app: OpenAPIHono, deps: PushRouteDeps): void {
  const open = createRouteGroup();
  open.openapi(
    createRoute({
      method: 'get',
      path: '/v1/push/vapid-public-key',
      summary: 'The VAPID public key to subscribe with (applicationServerKey)',
      responses: {
        200: { description: 'key', content: { 'application/json': { schema: z.object({ publicKey: z.string() }) } } },
        404: { description: 'Web Push is off', content: { 'application/json': { schema: ErrorSchema } } },
      },
    }),
    (c) => {
      if (!deps.vapidPublicKey) throw new AppError(404, 'push_disabled', 'Web Push is not configured on this server');
      return c.json({ publicKey: deps.vapidPublicKey }, 200);
    },
  );

  const user = createRouteGroup<UserEnv>();
  user.use('/v1/devices/*', requireUser(deps.auth));
  user.use('/v1/devices/*', deps.limiter.middleware('subscriptions'));
  const path = '/v1/devices/{deviceId}/push-subscription';
  const errors = {
    400: { description: 'invalid subscription or refused endpoint', content: { 'application/json': { schema: ErrorSchema } } },
    401: { description: 'missing or invalid token', content: { 'application/json': { schema: ErrorSchema } } },
    429: { description: 'rate limited', content: { 'application/json': { schema: ErrorSchema } } },
  } as const;

  user.openapi(
    createRoute({
      method: 'put',
      path,
      summary: "Register (or refresh) this device's push subscription",
      security: [{ bearer: [] }],
      request: { params: DeviceParam, body: { content: { 'application/json': { schema: PushSubscriptionJson } }, required: true } },
      responses: {
        200: { description: 'updated', content: { 'application/json': { schema: z.object({ ok: z.literal(true), created: z.boolean() }) } } },
        201: { description: 'created', content: { 'application/json': { schema: z.object({ ok: z.literal(true), created: z.boolean() }) } } },
        404: { description: 'Web Push is off', content: { 'application/json': { schema: ErrorSchema } } },
        409: { description: 'the user holds the most push subscriptions allowed', content: { 'application/json': { schema: ErrorSchema } } },
        ...errors,
      },
    }),
    async (c) => {
      if (!deps.vapidPublicKey) throw new AppError(404, 'push_disabled', 'Web Push is not configured on this server');
      const body = c.req.valid('json');
      const check = await checkPushEndpoint(body.endpoint, deps.allowlist, { resolve: deps.resolve });
      if (!check.ok) throw new AppError(400, 'endpoint_refused', check.reason);
      const result = await deps.store.upsert({
        endpoint: body.endpoint,
        userId: c.get('userId'),
        deviceId: c.req.valid('param').deviceId,
        keys: body.keys,
        expirationTime: body.expirationTime ?? null,
        vapidPublicKey: deps.vapidPublicKey,
      });
      if ('refused' in result) {
        deps.onCapRefused?.('push_per_user');
        throw new AppError(
          409,
          'subscription_limit',
          `expected at most ${result.max} push subscriptions per user (PUSH_MAX_SUBSCRIPTIONS_PER_USER), got one more; remove a device's with DELETE ${path.replace('{deviceId}', ':deviceId')}`,
        );
      }
      if (body.timeZone !== undefined && deps.timeZones) {
        const report = { userId: c.get('userId'), deviceId: c.req.valid('param').deviceId, timeZone: body.timeZone };
        await deps.timeZones.report(report).catch((err: unknown) => deps.log?.warn({ err, userId: report.userId }, 'reported time zone not stored'));
      }
      return c.json({ ok: true as const, created: result.created }, result.created ? 201 : 200);
    },
  );

  user.openapi(
    createRoute({
      method: 'delete',
      path,
      summary: "Remove this device's push subscriptions",
      security: [{ bearer: [] }],
      request: { params: DeviceParam },
      responses: { 204: { description: 'removed' }, 404: { description: 'none registered for this device', content: { 'application/json': { schema: ErrorSchema } } }, ...errors },
    }),
    async (c) => {
      const n = await deps.store.removeDevice(c.get('userId'), c.req.valid('param').deviceId);
      if (n === 0) throw new AppError(404, 'not_found', 'no push subscription registered for this device');
      return c.body(null, 204);
    },
  );

  app.route('/', open);
  app.route('/', user);
}
