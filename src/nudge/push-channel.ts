/**
 * The router's Web Push channel: sends a user's nudges due together to every
 * subscription of the user as one message (push-payload.ts) and keeps the
 * subscription table honest (404/410 → deleted). The payload is only the
 * nudges, never mission text: the device has its own data.
 */
import type { Logger } from '../log.js';
import type { PushSubscriptionStore } from '../devices/push-subscriptions.js';
import type { PushChannel } from './router.js';
import type { PushSender } from './web-push.js';
import { pushMessages } from './push-payload.js';

export function createPushChannel(deps: { store: PushSubscriptionStore; sender: PushSender; vapidPublicKey: string; log: Logger }): PushChannel {
  const { store, sender, log } = deps;
  return {
    enabled: true,
    subscriptionCounts: (userIds) => store.counts(userIds, deps.vapidPublicKey),
    async nudge(userId, frames, ttlSeconds) {
      const subs = (await store.forUser(userId)).filter((s) => s.vapidPublicKey === null || s.vapidPublicKey === deps.vapidPublicKey);
      const messages = pushMessages(frames);
      const outcomes = await Promise.all(
        subs.map(async (sub) => {
          let kind = 'gone';
          for (const { payload, topic } of messages) {
            const out = await sender.send(sub, payload, { ttlSeconds, topic, urgency: 'high' });
            kind = out.kind;
            if (out.kind === 'delivered') await store.markSuccess(sub.endpoint);
            else if (out.kind === 'gone') {
              await store.removeEndpoint(sub.endpoint);
              log.info({ userId, deviceId: sub.deviceId, status: out.status }, 'push subscription gone; removed');
              break;
            } else {
              await store.markFailure(sub.endpoint);
              log.warn({ userId, deviceId: sub.deviceId, outcome: out.kind, reason: 'reason' in out ? out.reason : undefined }, 'push not delivered');
            }
          }
          return kind;
        }),
      );
      if (outcomes.includes('delivered')) return 'delivered';
      if (outcomes.every((k) => k === 'gone')) return 'none-left';
      return 'failed';
    },
  };
}
