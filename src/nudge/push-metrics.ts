/**
 * The Web Push sender's metrics, registered once per registry (two senders
 * on one registry share them).
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { PushOutcome } from './push-options.js';

export interface PushMetrics {
  sends: Counter<'origin' | 'outcome'>;
  duration: Histogram<'origin'>;
}

export function pushMetrics(registry: Registry): PushMetrics {
  const sends =
    (registry.getSingleMetric('mana_ai_push_sends_total') as Counter<'origin' | 'outcome'> | undefined) ??
    new Counter({
      name: 'mana_ai_push_sends_total',
      help: 'Web Push sends by push-service origin and outcome (delivered|gone|rejected|retry|failed|circuit_open|refused)',
      labelNames: ['origin', 'outcome'],
      registers: [registry],
    });
  const duration =
    (registry.getSingleMetric('mana_ai_push_send_duration_seconds') as Histogram<'origin'> | undefined) ??
    new Histogram({
      name: 'mana_ai_push_send_duration_seconds',
      help: 'Duration of one Web Push HTTP request attempt, by push-service origin',
      labelNames: ['origin'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  return { sends, duration };
}

/** The `outcome` label of a final outcome. */
export function outcomeLabel(outcome: PushOutcome): string {
  if (outcome.kind !== 'failed') return outcome.kind;
  if (outcome.reason === 'circuit-open') return 'circuit_open';
  if (outcome.reason === 'endpoint-refused') return 'refused';
  return 'failed';
}
