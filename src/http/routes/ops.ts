/**
 * Operator routes: liveness, readiness, and the service-key-gated internal
 * routes (tick, due missions). /health and /ready are open to probes and say
 * only the status (and, for /ready, the names of missing grants); with the
 * service key they add version, instance, scheduler state, reasons and the
 * statements that fix missing grants.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Sql } from '../../db/pool.js';
import type { Scheduler } from '../../schedule/scheduler.js';
import type { PassStats } from '../../schedule/pass.js';
import { findDueMissions } from '../../schedule/due.js';
import type { Readiness } from '../../db/readiness.js';
import { requireServiceKey, serviceKeyMatches } from '../service-auth.js';
import { ErrorSchema } from './schemas.js';

export interface OpsDeps {
  version: string;
  instanceId: string;
  sql: Sql;
  scheduler: Scheduler<PassStats>;
  serviceKey: string;
  isReady: () => Promise<Readiness>;
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

const HealthSchema = z.object({
  status: z.literal('ok'),
  version: z.string().optional().openapi({ description: 'with the service key only' }),
  instanceId: z.string().optional().openapi({ description: 'with the service key only' }),
  scheduler: z
    .object({
      state: z.enum(['idle', 'running', 'stopped']),
      enabled: z.boolean(),
      lastPassAt: z.string().nullable(),
      lastError: z.string().nullable(),
      nextWakeAt: z.string().nullable(),
    })
    .optional()
    .openapi({ description: 'with the service key only' }),
});

const ReadySchema = z.object({
  status: z.enum(['ready', 'not-ready']),
  degraded: z.array(z.string()).optional().openapi({ description: 'names of missing grants the service runs without' }),
  reason: z.string().optional().openapi({ description: 'why not ready; with the service key only' }),
  grants: z.array(z.string()).optional().openapi({ description: 'statements that fix the missing grants; with the service key only' }),
  version: z.string().optional(),
  instanceId: z.string().optional(),
});

export function mountOps(app: OpenAPIHono, deps: OpsDeps): void {
  const trusted = (key: string | undefined) => key !== undefined && serviceKeyMatches(deps.serviceKey, key);
  app.openapi(
    createRoute({
      method: 'get',
      path: '/health',
      summary: 'Liveness (never touches the database); details with the service key',
      request: { headers: serviceKeyHeader },
      responses: { 200: { description: 'alive', content: { 'application/json': { schema: HealthSchema } } } },
    }),
    (c) => {
      if (!trusted(c.req.header('x-service-key'))) return c.json({ status: 'ok' as const }, 200);
      return c.json({ status: 'ok' as const, version: deps.version, instanceId: deps.instanceId, scheduler: deps.scheduler.state() }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/ready',
      summary: 'Readiness: the database answers and migrations ran; names missing grants',
      request: { headers: serviceKeyHeader },
      responses: {
        200: { description: 'ready (possibly degraded)', content: { 'application/json': { schema: ReadySchema } } },
        503: { description: 'not ready', content: { 'application/json': { schema: ReadySchema } } },
      },
    }),
    async (c) => {
      const r = await deps.isReady();
      const status = r.ready ? ('ready' as const) : ('not-ready' as const);
      const degraded = r.degraded.length > 0 ? { degraded: r.degraded.map((d) => d.name) } : {};
      const details = trusted(c.req.header('x-service-key'))
        ? {
            ...(r.reason ? { reason: r.reason } : {}),
            ...(r.degraded.length > 0 ? { grants: r.degraded.map((d) => d.fix) } : {}),
            version: deps.version,
            instanceId: deps.instanceId,
          }
        : {};
      return c.json({ status, ...degraded, ...details }, r.ready ? 200 : 503);
    },
  );

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
