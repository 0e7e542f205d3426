/**
 * GET /metrics, Prometheus text. Protected by a Bearer token when
 * METRICS_TOKEN is set (compared in constant time, like the service key);
 * mounted on the main port or on a listener of its own (METRICS_PORT).
 */
import type { Context } from 'hono';
import type { Registry } from 'prom-client';
import { serviceKeyMatches } from '../service-auth.js';
import { errorBody } from '../errors.js';

export interface MetricsRouteDeps {
  registry: Registry;
  token: string | undefined;
}

/** The handler for GET /metrics, for the main app or the metrics listener. */
export function metricsHandler(deps: MetricsRouteDeps) {
  return async function metrics(c: Context) {
    if (deps.token !== undefined) {
      const given = /^Bearer (.+)$/i.exec(c.req.header('authorization') ?? '')?.[1];
      if (!serviceKeyMatches(deps.token, given)) {
        c.header('WWW-Authenticate', 'Bearer');
        return c.json(errorBody('metrics_token_required', 'expected Authorization: Bearer <METRICS_TOKEN>'), 401);
      }
    }
    c.header('Content-Type', deps.registry.contentType);
    return c.body(await deps.registry.metrics());
  };
}
