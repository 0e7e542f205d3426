/**
 * Operator routes: liveness, readiness, metrics, and the service-key-gated
 * internal routes of the foundation (tick, due missions).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Sql } from '../../db/pool.js';
import type { Metrics } from '../../metrics.js';
import type { Scheduler } from '../../schedule/scheduler.js';
import type { PassStats } from '../../schedule/pass.js';
import { findDueMissions } from '../../schedule/due.js';
import { requireServiceKey } from '../service-auth.js';
import { ErrorSchema } from './schemas.js';

export interface OpsDeps {
  version: string;
  instanceId: string;
  sql: Sql;
  metrics: Metrics;
  scheduler: Scheduler<PassStats>;
  serviceKey: string;
  isReady: () => Promise<{ ready: boolean; reason?: string }>;
}

const TickStats = z
  .object({
    rowsApplied: z.number().int(),
    rowsSkipped: z.number().int(),
    missionsDue: z.number().int(),
    projectionRan: z.boolean(),
    projectionStalled: z.boolean(),
    durationMs: z.number(),
  })
  .openapi('TickStats');

const DueMissionSchema = z
  .object({ userId: z.string(), missionId: z.string(), nextRunAt: z.string() })
  .openapi('DueMission');

const serviceKeyHeader = z.object({ 'x-service-key': z.string().optional().openapi({ description: 'MANA_SERVICE_KEY' }) });

export function mountOps(app: OpenAPIHono, deps: OpsDeps): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/health',
      summary: 'Liveness (never touches the database)',
      responses: {
        200: {
          description: 'alive',
          content: {
            'application/json': {
              schema: z.object({
                status: z.literal('ok'),
                version: z.string(),
                instanceId: z.string(),
                scheduler: z.object({
                  state: z.enum(['idle', 'running', 'stopped']),
                  enabled: z.boolean(),
                  lastPassAt: z.string().nullable(),
                  lastError: z.string().nullable(),
                  nextWakeAt: z.string().nullable(),
                }),
              }),
            },
          },
        },
      },
    }),
    (c) => c.json({ status: 'ok' as const, version: deps.version, instanceId: deps.instanceId, scheduler: deps.scheduler.state() }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/ready',
      summary: 'Readiness: the database answers and migrations ran',
      responses: {
        200: { description: 'ready', content: { 'application/json': { schema: z.object({ status: z.literal('ready') }) } } },
        503: { description: 'not ready', content: { 'application/json': { schema: z.object({ status: z.literal('not-ready'), reason: z.string() }) } } },
      },
    }),
    async (c) => {
      const r = await deps.isReady();
      if (r.ready) return c.json({ status: 'ready' as const }, 200);
      return c.json({ status: 'not-ready' as const, reason: r.reason ?? 'unknown' }, 503);
    },
  );

  app.get('/metrics', async (c) => {
    c.header('Content-Type', deps.metrics.registry.contentType);
    return c.body(await deps.metrics.registry.metrics());
  });

  app.use('/internal/*', requireServiceKey(deps.serviceKey));

  app.openapi(
    createRoute({
      method: 'post',
      path: '/internal/tick',
      summary: 'Run one scheduler pass now and return its stats',
      request: { headers: serviceKeyHeader },
      responses: {
        200: { description: 'stats of the pass', content: { 'application/json': { schema: TickStats } } },
        401: { description: 'missing or wrong service key', content: { 'application/json': { schema: ErrorSchema } } },
      },
    }),
    async (c) => c.json(await deps.scheduler.runOnce(), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/internal/missions/due',
      summary: 'Missions due now, oldest first',
      request: { headers: serviceKeyHeader, query: z.object({ limit: z.coerce.number().int().min(1).max(100_000).default(1000) }) },
      responses: {
        200: { description: 'due missions', content: { 'application/json': { schema: z.array(DueMissionSchema) } } },
        401: { description: 'missing or wrong service key', content: { 'application/json': { schema: ErrorSchema } } },
      },
    }),
    async (c) => c.json(await findDueMissions(deps.sql, { limit: c.req.valid('query').limit }), 200),
  );
}
