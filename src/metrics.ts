/**
 * The Prometheus registry of one coordinator. A registry per instance (not
 * prom-client's global one) so two coordinators can run in one process.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * How often the event-loop lag histogram samples the loop. prom-client's
 * default of 10 ms wakes an idle process 100 times a second, about 8 ms of
 * CPU per second, more than everything else an idle coordinator does; at
 * 100 ms a stall still shows in every scrape.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'mana_ai_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const registers = [registry];
  return {
    registry,
    ticks: new Counter({ name: 'mana_ai_ticks_total', help: 'Scheduler passes run', labelNames: ['outcome'] as const, registers }),
    tickDuration: new Histogram({
      name: 'mana_ai_tick_duration_seconds',
      help: 'Duration of one scheduler pass (refresh + due scan + dispatch)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    rowsApplied: new Counter({ name: 'mana_ai_projection_rows_applied_total', help: 'sync_changes rows merged into snapshots', registers }),
    rowsSkipped: new Counter({ name: 'mana_ai_projection_rows_skipped_total', help: 'Malformed sync_changes rows skipped', registers }),
    projectionStalled: new Gauge({
      name: 'mana_ai_projection_horizon_stalled',
      help: '1 when the projection horizon cannot advance (open transactions invisible to this role)',
      registers,
    }),
    dueMissions: new Gauge({ name: 'mana_ai_due_missions', help: 'Missions due at the last pass', registers }),
    dbErrors: new Counter({ name: 'mana_ai_db_errors_total', help: 'Database errors seen by the scheduler', labelNames: ['code'] as const, registers }),
    authRefused: new Counter({
      name: 'mana_ai_auth_refused_total',
      help: 'Refused credentials: HTTP 401s (user token or service key) and socket auth failures, by transport and code',
      labelNames: ['transport', 'code'] as const,
      registers,
    }),
    capRefused: new Counter({
      name: 'mana_ai_cap_refused_total',
      help: 'Requests refused by a per-user or per-instance cap (ws_per_user, ws_total, push_per_user)',
      labelNames: ['cap'] as const,
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
