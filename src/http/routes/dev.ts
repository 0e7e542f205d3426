/**
 * Dev-default-only routes (never mounted in production or with a JWKS):
 * a token for a chosen user id, and a mana-sync-shaped endpoint that writes
 * real sync_changes rows for the caller, so the demo and the tests exercise
 * the same log production reads.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { withUser, type Sql } from '../../db/pool.js';
import { syncChanges } from '../../db/sync-table.js';
import { createRouteGroup } from '../app.js';
import { requireUser, type UserEnv } from '../user-gate.js';
import { signDevToken, type UserAuth } from '../../auth/user-auth.js';
import { missionsOfUser } from '../../projection/missions.js';
import { SYNC_OPS } from '../../projection/wire.js';
import { ErrorSchema } from './schemas.js';

const UserIdSchema = z.string().min(1).max(128).regex(/^[A-Za-z0-9._@:-]+$/, 'userId: letters, digits and . _ @ : - only');

const ChangeSchema = z.object({
  appId: z.string().min(1).max(64),
  tableName: z.string().min(1).max(64),
  recordId: z.string().min(1).max(256),
  op: z.enum(SYNC_OPS),
  data: z.record(z.string(), z.unknown()).nullable().optional(),
  fieldTimestamps: z.record(z.string(), z.string()).optional(),
  // Strings only, as mana-sync stores field_meta: any other value makes its read of the row fail.
  fieldMeta: z.record(z.string(), z.string()).optional(),
});

export interface DevRouteDeps {
  sql: Sql;
  auth: UserAuth;
  devSecret: Uint8Array;
  writerRole: string | undefined;
  /** SYNC_SCHEMA: where sync_changes lives. */
  syncSchema: string;
  /** Asks the scheduler for a pass soon, so the demo does not wait a full tick. */
  poke: () => void;
}

export function mountDev(app: OpenAPIHono, deps: DevRouteDeps): void {
  const open = createRouteGroup();
  open.openapi(
    createRoute({
      method: 'post',
      path: '/dev/token',
      summary: 'Dev default only: a token for any user id (12 h, or ttlSec: short-lived sessions for tests)',
      request: {
        body: {
          content: { 'application/json': { schema: z.object({ userId: UserIdSchema, ttlSec: z.number().int().min(1).max(12 * 3600).optional() }) } },
          required: true,
        },
      },
      responses: {
        200: { description: 'token', content: { 'application/json': { schema: z.object({ token: z.string() }) } } },
        400: { description: 'invalid request', content: { 'application/json': { schema: ErrorSchema } } },
      },
    }),
    async (c) => {
      const { userId, ttlSec } = c.req.valid('json');
      return c.json({ token: await signDevToken(deps.devSecret, userId, ttlSec) }, 200);
    },
  );

  const user = createRouteGroup<UserEnv>();
  user.use('/dev/sync/*', requireUser(deps.auth));
  user.openapi(
    createRoute({
      method: 'post',
      path: '/dev/sync/changes',
      summary: "Dev default only: append rows to sync_changes as the caller (mana-sync's shape)",
      security: [{ bearer: [] }],
      request: { body: { content: { 'application/json': { schema: z.object({ changes: z.array(ChangeSchema).min(1).max(100) }) } }, required: true } },
      responses: {
        200: { description: 'written', content: { 'application/json': { schema: z.object({ written: z.number().int() }) } } },
        400: { description: 'invalid request', content: { 'application/json': { schema: ErrorSchema } } },
        401: { description: 'missing or invalid token', content: { 'application/json': { schema: ErrorSchema } } },
      },
    }),
    async (c) => {
      const userId = c.get('userId');
      const { changes } = c.req.valid('json');
      await withUser(
        deps.sql,
        userId,
        async (tx) => {
          for (const ch of changes) {
            await tx`
              INSERT INTO ${syncChanges(tx, deps.syncSchema)} (app_id, table_name, record_id, user_id, op, data, field_timestamps, field_meta, client_id, actor, origin)
              VALUES (${ch.appId}, ${ch.tableName}, ${ch.recordId}, ${userId}, ${ch.op},
                ${ch.data === undefined || ch.data === null ? null : tx.json(ch.data as never)},
                ${tx.json((ch.fieldTimestamps ?? {}) as never)}, ${tx.json((ch.fieldMeta ?? {}) as never)},
                'mana-ai-dev', ${tx.json({ kind: 'user', userId })}, 'user')`;
          }
        },
        { role: deps.writerRole },
      );
      deps.poke();
      return c.json({ written: changes.length }, 200);
    },
  );
  user.openapi(
    createRoute({
      method: 'get',
      path: '/dev/sync/missions',
      summary: "Dev default only: the caller's projected missions",
      security: [{ bearer: [] }],
      responses: {
        200: { description: 'missions', content: { 'application/json': { schema: z.array(z.record(z.string(), z.unknown())) } } },
        401: { description: 'missing or invalid token', content: { 'application/json': { schema: ErrorSchema } } },
      },
    }),
    async (c) => c.json(await missionsOfUser(deps.sql, c.get('userId')), 200),
  );

  app.route('/', open);
  app.route('/', user);
}
