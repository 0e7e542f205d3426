/**
 * The routing decision, pure: which party gets an occurrence, and how long
 * it has to claim it. docs/architecture.md "Routing": a live socket anywhere → WebSocket
 * to all the user's open devices; else push subscriptions → Web Push; else
 * the server plans it — or, when the server cannot (no LLM configured), the
 * occurrence waits for a device.
 */
import { WAIT_REASON } from '../schedule/waiting.js';
import type { Reason } from '../schedule/reasons.js';

export interface RouteFacts {
  liveSocket: boolean;
  pushSubscriptions: number;
  pushEnabled: boolean;
  serverPlanning: boolean;
}

export type Route =
  | { channel: 'ws'; deadlineMs: number }
  | { channel: 'push'; deadlineMs: number }
  | { channel: 'server' }
  | { channel: 'wait'; reason: Reason };

export interface RouteTimeouts {
  wsClaimMs: number;
  pushClaimMs: number;
}

export function decideRoute(facts: RouteFacts, timeouts: RouteTimeouts): Route {
  if (facts.liveSocket) return { channel: 'ws', deadlineMs: timeouts.wsClaimMs };
  if (facts.pushEnabled && facts.pushSubscriptions > 0) return { channel: 'push', deadlineMs: timeouts.pushClaimMs };
  return fallbackRoute(facts);
}


/** Where an occurrence goes when no device can take it (now, or after a deadline or lease). */
export function fallbackRoute(facts: Pick<RouteFacts, 'serverPlanning'>): Route {
  if (facts.serverPlanning) return { channel: 'server' };
  return { channel: 'wait', reason: WAIT_REASON };
}
