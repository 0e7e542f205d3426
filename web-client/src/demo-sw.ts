/**
 * The demo's service worker. Served at `/demo/sw.js` (a one-line module shim
 * in web-client/demo/sw.js that imports this bundle) with scope `/demo/`.
 *
 * On a push it plans in the worker with the demo's stand-in planner, using
 * the session the demo page saved in IndexedDB, so proposals are ready even
 * when no tab is open; signed out, it shows a notification that names nothing and claims nothing.
 */
import { handleNotificationClick, handlePush, handlePushSubscriptionChange, type PushHandlerOptions } from './sw.js';
import { createDevApi, fetchDevToken, tokenExpiry } from './demo-lib/dev-api.js';
import { planWithDemoPlanner } from './demo-lib/planner.js';
import { broadcast, loadSession, saveSession, type DemoSession } from './demo-lib/store.js';

const sw = globalThis as unknown as ServiceWorkerGlobalScope;
const APP_URL = '/demo';

/** A token for the saved session, refreshed through /dev/token when it is about to expire. */
function tokenSource(session: DemoSession): () => Promise<string> {
  let current = session;
  return async () => {
    const exp = tokenExpiry(current.token);
    if (exp === undefined || exp * 1000 - Date.now() > 60_000) return current.token;
    const token = await fetchDevToken(current.baseUrl, current.userId);
    current = { ...current, token };
    await saveSession(current);
    return token;
  };
}

/** The worker's options: null when signed out (a neutral notification, no claim). */
async function pushOptions(): Promise<PushHandlerOptions | null> {
  const base: PushHandlerOptions = {
    appUrl: APP_URL,
    title: 'mana-ai demo',
    onHandled: (nudge, outcome) => {
      broadcast({ type: 'worker-log', event: `worker:${outcome.kind}`, text: `push for ${nudge?.iterationId ?? '(unreadable payload)'}: ${outcome.kind}` });
      if (outcome.kind === 'planned') broadcast({ type: 'proposals-changed' });
    },
  };
  const session = await loadSession().catch(() => undefined);
  if (!session) return null;
  const getToken = tokenSource(session);
  const dev = createDevApi(session.baseUrl, getToken);
  return {
    ...base,
    baseUrl: session.baseUrl,
    deviceId: session.deviceId,
    getToken,
    planInWorker: (missionId, iterationId) => planWithDemoPlanner(dev, missionId, iterationId),
  };
}

sw.addEventListener('install', () => {
  void sw.skipWaiting();
});
sw.addEventListener('activate', (event) => {
  event.waitUntil(sw.clients.claim());
});
sw.addEventListener('push', (event) => handlePush(event, pushOptions));
sw.addEventListener('notificationclick', (event) => handleNotificationClick(event, { appUrl: APP_URL }));
sw.addEventListener('pushsubscriptionchange', (event) =>
  handlePushSubscriptionChange(event as PushSubscriptionChangeEvent, async () => {
    const session = await loadSession().catch(() => undefined);
    return session ? { baseUrl: session.baseUrl, deviceId: session.deviceId, getToken: tokenSource(session) } : null;
  }),
);
