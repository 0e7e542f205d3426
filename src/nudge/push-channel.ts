/**
 * The router's Web Push channel: sends a nudge to every subscription of a
 * user and keeps the subscription table honest (404/410 → deleted). The
 * payload is only the nudge, never mission text: the device has its own data.
 */
import type { Logger } from '../log.js';
import type { PushSubscriptionStore } from '../devices/push-subscriptions.js';
import type { PushChannel } from './router.js';
import type { PushSender } from './web-push.js';
import { topicForMission } from './web-push.js';

export function createPushChannel(deps: { store: PushSubscriptionStore; sender: PushSender; vapidPublicKey: string; log: Logger }): PushChannel {
  const { store, sender, log } = deps;
  return {
    enabled: true,
    subscriptionCounts: (userIds) => store.counts(userIds, deps.vapidPublicKey),
    async nudge(userId, frame, ttlSeconds) {
      const subs = (await store.forUser(userId)).filter((s) => s.vapidPublicKey === null || s.vapidPublicKey === deps.vapidPublicKey);
      const topic = topicForMission(frame.missionId);
      const outcomes = await Promise.all(
        subs.map(async (sub) => {
          const out = await sender.send(sub, frame, { ttlSeconds, topic, urgency: 'high' });
          if (out.kind === 'delivered') await store.markSuccess(sub.endpoint);
          else if (out.kind === 'gone') {
            await store.removeEndpoint(sub.endpoint);
            log.info({ userId, deviceId: sub.deviceId, status: out.status }, 'push subscription gone; removed');
          } else {
            await store.markFailure(sub.endpoint);
            log.warn({ userId, deviceId: sub.deviceId, outcome: out.kind, reason: 'reason' in out ? out.reason : undefined }, 'push not delivered');
          }
          return out.kind;
        }),
      );
      if (outcomes.includes('delivered')) return 'delivered';
      if (outcomes.every((k) => k === 'gone')) return 'none-left';
      return 'failed';
    },
  };
}
