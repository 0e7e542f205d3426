/**
 * The demo page (`/demo`): the whole loop in a real browser — sign in as a
 * dev user, create a mission due in N seconds, watch the nudge arrive, the
 * claim, the (demo) plan, the proposals, and the occurrence ledger.
 *
 * Stable hooks for Playwright (keep them when changing the page):
 *   #user-id, #sign-in, #sign-out, #signed-in-as, #device-id
 *   #mission-title, #due-seconds, #create-mission
 *   #enable-push, #disable-push, #push-status[data-state=unknown|enabled|disabled|error]
 *   #status[data-state=<connection status: idle|connecting|authenticating|open|waiting|paused|refused|stopped>]
 *   [data-testid=mission-row][data-mission-id]
 *   [data-testid=proposal][data-proposal-id][data-iteration-id][data-mission-id]
 *       [data-status=pending|approved|rejected][data-source=browser|server]
 *     inside: [data-testid=approve], [data-testid=reject], [data-testid=proposal-status]
 *   [data-testid=occurrence-row][data-iteration-id][data-mission-id][data-status][data-mine=true|false]
 *   #log > [data-testid=log-entry][data-event=<event>]   (newest first); <event> is a client
 *     event type (connected, disconnected, nudge, skipped, claimed, planned, released,
 *     elsewhere, staged, push-enabled, push-disabled, warning, signed-out, error) or a demo one (signed-in,
 *     signed-out, mission-created, approved, rejected, worker, notification-click,
 *     worker:<outcome> relayed from the service worker, e.g. worker:planned)
 *   body[data-ready=true] once the page restored its state (signed in or not)
 *   window.manaDemo = { client, deviceId, userId, refresh(), failNextPlan(), freezeToken() }
 *     failNextPlan(): the next plan in this tab throws (its message must never reach the server);
 *     freezeToken(): getToken stops refreshing (an expiring session the app cannot renew).
 *   ?tokenTtl=<seconds> in the URL: sign in with tokens that live that long.
 *   window.manaDemoPushManager: set it before load (page.addInitScript) to replace
 *     the browser's PushManager for #enable-push (offline Chromium cannot subscribe).
 *   ?device=<id> in the URL sets this browser's device id (stored for later loads).
 */
import { createMissionClient, type MissionClient, type PushManagerLike } from './index.js';
import { createDevApi, fetchDevToken, tokenExpiry, type DevApi, type Mission } from './demo-lib/dev-api.js';
import { planWithDemoPlanner, proposalsFor } from './demo-lib/planner.js';
import { activated, describeEvent, short } from './demo-lib/view.js';
import { el, log, renderMissions, renderOccurrences, renderProposals, setPushStatus } from './demo-lib/panels.js';
import { DEMO_CHANNEL, addProposals, clearProposals, saveSession, type DemoMessage, type DemoSession } from './demo-lib/store.js';

const BASE_URL = location.origin;
const SW_URL = '/demo/sw.js';
const SW_SCOPE = '/demo/';
const KEYS = { device: 'mana-ai-demo:device-id', user: 'mana-ai-demo:user-id', session: 'mana-ai-demo:session', push: 'mana-ai-demo:push' };

declare global {
  interface Window {
    manaDemo?: {
      client: MissionClient | null;
      deviceId: string;
      userId: string | null;
      refresh: () => Promise<void>;
      failNextPlan?: () => void;
      freezeToken?: () => void;
    };
    manaDemoPushManager?: PushManagerLike;
  }
}

// ---- device and session --------------------------------------------------

function initDeviceId(): string {
  const fromUrl = new URLSearchParams(location.search).get('device');
  const valid = (v: string | null): v is string => !!v && /^[A-Za-z0-9._:-]{1,128}$/.test(v);
  if (valid(fromUrl)) localStorage.setItem(KEYS.device, fromUrl);
  const stored = localStorage.getItem(KEYS.device);
  if (valid(stored)) return stored;
  const id = `demo-${crypto.randomUUID().slice(0, 8)}`;
  localStorage.setItem(KEYS.device, id);
  return id;
}

const deviceId = initDeviceId();
const tokenTtl = Number(new URLSearchParams(location.search).get('tokenTtl')) || undefined;
const hooks = { failNextPlan: false, frozen: false };
let session: DemoSession | null = null;
let client: MissionClient | null = null;
let dev: DevApi | null = null;
let registration: Promise<ServiceWorkerRegistration | null> | null = null;
const missions = new Map<string, Mission>();
let pollTimer: ReturnType<typeof setTimeout> | undefined;

async function getToken(): Promise<string> {
  if (!session) throw new Error('signed out');
  const exp = tokenExpiry(session.token);
  if (!hooks.frozen && exp !== undefined && exp * 1000 - Date.now() < 60_000) {
    session = { ...session, token: await fetchDevToken(BASE_URL, session.userId, tokenTtl) };
    persistSession(session);
  }
  return session.token;
}

function persistSession(s: DemoSession | null): void {
  if (s) localStorage.setItem(KEYS.session, JSON.stringify(s));
  else localStorage.removeItem(KEYS.session);
  // The service worker cannot read localStorage: it reads the IndexedDB copy.
  saveSession(s).catch((e: unknown) => log('error', `saving the session for the service worker failed: ${String(e)}`));
}

function missionName(missionId: string): string {
  const m = missions.get(missionId);
  return typeof m?.title === 'string' ? `"${m.title}"` : short(missionId);
}

// ---- rendering ---------------------------------------------------------------

function setStatus(): void {
  const status = el('status');
  const state = client ? client.state().connection : 'idle';
  status.dataset['state'] = state;
  status.textContent = !session ? 'signed out' : state === 'open' ? 'connected' : state;
}

function setSignedIn(userId: string | null): void {
  el('signed-in-as').textContent = userId ?? 'nobody';
  for (const id of ['create-mission', 'enable-push', 'disable-push', 'sign-out']) el<HTMLButtonElement>(id).disabled = !userId;
  setStatus();
}

// ---- data ------------------------------------------------------------------

/** Reloads missions and stages their server-planned iterations (once each, across reloads). */
async function refreshMissions(): Promise<void> {
  if (!dev || !client) return;
  const list = await dev.missions();
  missions.clear();
  for (const m of list) missions.set(m.id, m);
  renderMissions(missions.values());
  for (const m of list) await client.stageServerIterations(m);
}

async function refreshOccurrences(): Promise<void> {
  if (!dev) return;
  renderOccurrences(await dev.occurrences(deviceId), deviceId, missionName);
}

async function refresh(): Promise<void> {
  await Promise.all([
    refreshOccurrences().catch((e: unknown) => log('error', `occurrences: ${String(e)}`)),
    renderProposals(),
  ]);
}

let tick = 0;
function schedulePoll(): void {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(() => {
    tick++;
    const missionsDue = tick % 3 === 0 ? refreshMissions().catch((e: unknown) => log('error', `missions: ${String(e)}`)) : Promise.resolve();
    void Promise.all([refresh(), missionsDue]).finally(() => {
      setStatus();
      if (session) schedulePoll();
    });
  }, 2_000);
}

// ---- service worker and push -------------------------------------------------

async function registerWorker(): Promise<ServiceWorkerRegistration | null> {
  if (!('serviceWorker' in navigator)) {
    log('error', 'service workers are not available here (needs https or localhost)');
    return null;
  }
  try {
    const reg = await navigator.serviceWorker.register(SW_URL, { scope: SW_SCOPE, type: 'module', updateViaCache: 'none' });
    await activated(reg);
    log('worker', `service worker active (scope ${reg.scope})`);
    return reg;
  } catch (e: unknown) {
    log('error', `service worker registration failed: ${String(e)}`);
    return null;
  }
}

async function enablePush(): Promise<void> {
  if (!client) return;
  el<HTMLButtonElement>('enable-push').disabled = true;
  try {
    if (typeof Notification !== 'undefined' && Notification.permission === 'default') await Notification.requestPermission();
    const reg = await (registration ??= registerWorker());
    const pushManager = window.manaDemoPushManager;
    if (!reg && !pushManager) throw new Error('no service worker, so no push');
    await client.enablePush({ ...(reg ? { serviceWorker: reg } : {}), ...(pushManager ? { pushManager } : {}), timeoutMs: 10_000 });
    localStorage.setItem(KEYS.push, 'on');
    setPushStatus('enabled', 'enabled');
  } catch (e: unknown) {
    setPushStatus('error', e instanceof Error ? e.message : String(e));
  } finally {
    el<HTMLButtonElement>('enable-push').disabled = !client;
  }
}

async function disablePush(): Promise<void> {
  if (!client) return;
  try {
    const reg = await (registration ??= registerWorker());
    const pushManager = window.manaDemoPushManager;
    await client.disablePush({ ...(reg ? { serviceWorker: reg } : {}), ...(pushManager ? { pushManager } : {}) });
    localStorage.removeItem(KEYS.push);
    setPushStatus('disabled', 'disabled');
  } catch (e: unknown) {
    setPushStatus('error', e instanceof Error ? e.message : String(e));
  }
}

// ---- sign in / out -------------------------------------------------------------

async function signIn(userId: string, token?: string): Promise<void> {
  await signOut(false);
  session = { userId, deviceId, baseUrl: BASE_URL, token: token ?? (await fetchDevToken(BASE_URL, userId, tokenTtl)) };
  localStorage.setItem(KEYS.user, userId);
  persistSession(session);
  dev = createDevApi(BASE_URL, getToken);
  const devApi = dev;
  client = createMissionClient({
    baseUrl: BASE_URL,
    getToken,
    deviceId,
    planLocally: async (missionId, iterationId) => {
      if (hooks.failNextPlan) {
        hooks.failNextPlan = false;
        throw new Error(`demo planner failed while reading the decrypted objective of ${missionName(missionId)}`);
      }
      return planWithDemoPlanner(devApi, missionId, iterationId);
    },
    stageIteration: async (missionId, iteration) => {
      const mission = missions.get(missionId) ?? { id: missionId };
      await addProposals(proposalsFor(mission, iteration, 'server'));
    },
  });
  client.onEvent((e) => {
    log(e.type, describeEvent(e, missionName));
    setStatus();
    if (e.type === 'planned' || e.type === 'staged') void renderProposals();
    if (e.type === 'nudge' || e.type === 'planned') void refreshOccurrences().catch(() => undefined);
    // A nudge for a mission created elsewhere, or a plan that moved nextRunAt and added an
    // iteration: show the missions now, not at the next missions poll.
    if ((e.type === 'nudge' && !missions.has(e.missionId)) || e.type === 'planned') void refreshMissions().catch(() => undefined);
    // The server wrote to a mission (its plan): pull it now, as the webapp pulls from mana-sync.
    if (e.type === 'mission-changed') void Promise.all([refreshMissions(), refreshOccurrences()]).catch(() => undefined);
  });
  window.manaDemo = { client, deviceId, userId, refresh, failNextPlan: () => void (hooks.failNextPlan = true), freezeToken: () => void (hooks.frozen = true) };
  setSignedIn(userId);
  log('signed-in', `signed in as ${userId} on device ${deviceId}`);
  client.start();
  registration = registerWorker();
  await Promise.all([refreshMissions().catch((e: unknown) => log('error', `missions: ${String(e)}`)), refresh()]);
  schedulePoll();
  // Once opted in, re-register on every load: idempotent, and it renews the
  // subscription when the server's VAPID key changed.
  if (localStorage.getItem(KEYS.push) === 'on') void enablePush();
}

/**
 * Leaving: `clear` (the sign-out button) ends the session as the README's
 * integration does — client.signOut() (push unsubscribed here and on the
 * server, this user's records forgotten, the socket closed) — then drops the
 * session the page and the worker read. Without it (switching users) only
 * the client stops.
 */
async function signOut(clear = true): Promise<void> {
  clearTimeout(pollTimer);
  const leaving = client;
  client = null;
  if (clear && leaving) {
    const reg = await (registration ?? Promise.resolve(null)).catch(() => null);
    const pushManager = window.manaDemoPushManager;
    await leaving.signOut({ ...(reg ? { serviceWorker: reg } : {}), ...(pushManager ? { pushManager } : {}) }).catch((e: unknown) => log('error', `sign-out: ${String(e)}`));
    localStorage.removeItem(KEYS.push);
    setPushStatus('disabled', 'disabled');
  } else {
    leaving?.stop();
  }
  dev = null;
  session = null;
  missions.clear();
  if (clear) {
    localStorage.removeItem(KEYS.user);
    persistSession(null);
    // Proposals are this user's local data: the app drops them with the session.
    await clearProposals().catch(() => undefined);
    void renderProposals(true);
    log('signed-out', 'signed out');
  }
  window.manaDemo = { client: null, deviceId, userId: null, refresh };
  setSignedIn(null);
}

// ---- wiring ------------------------------------------------------------------

function onClick(id: string, fn: () => Promise<void> | void): void {
  el(id).addEventListener('click', () => {
    Promise.resolve()
      .then(fn)
      .catch((e: unknown) => log('error', e instanceof Error ? e.message : String(e)));
  });
}

async function createMission(): Promise<void> {
  if (!dev || !session) return;
  const title = el<HTMLInputElement>('mission-title').value.trim() || 'Demo mission';
  const seconds = Math.max(0, Number(el<HTMLInputElement>('due-seconds').value) || 0);
  const now = new Date();
  const id = crypto.randomUUID();
  const record: Mission = {
    id,
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    title,
    objective: `Make visible progress on "${title}" this week.`,
    conceptMarkdown: '# Demo mission\n\nPropose small, concrete next steps. Never act without approval.',
    inputs: [],
    cadence: { kind: 'interval', everyMinutes: 60 },
    state: 'active',
    nextRunAt: new Date(now.getTime() + seconds * 1000).toISOString(),
    iterations: [],
    userId: session.userId,
  };
  await dev.postChanges([{ appId: 'ai', tableName: 'aiMissions', recordId: id, op: 'insert', data: record }]);
  missions.set(id, record);
  renderMissions(missions.values());
  log('mission-created', `created "${title}" (${short(id)}), due in ${seconds}s`);
}

function wire(): void {
  el('device-id').textContent = deviceId;
  onClick('sign-in', () => signIn(el<HTMLInputElement>('user-id').value.trim() || 'demo-user'));
  onClick('sign-out', () => signOut());
  onClick('create-mission', createMission);
  onClick('enable-push', enablePush);
  onClick('disable-push', disablePush);

  if (typeof BroadcastChannel !== 'undefined') {
    new BroadcastChannel(DEMO_CHANNEL).onmessage = (ev: MessageEvent<DemoMessage>) => {
      const msg = ev.data;
      if (msg.type === 'proposals-changed') void renderProposals();
      else if (msg.type === 'worker-log') log(msg.event, `service worker: ${msg.text}`);
    };
  }
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.addEventListener('message', (ev: MessageEvent<{ type?: string; iterationId?: string }>) => {
      if (ev.data?.type === 'mana-ai:notification-click') log('notification-click', `opened from a notification (iteration ${short(ev.data.iterationId ?? '?')})`);
    });
    navigator.serviceWorker.startMessages();
  }
}

async function restore(): Promise<void> {
  const userId = localStorage.getItem(KEYS.user);
  if (userId) el<HTMLInputElement>('user-id').value = userId;
  let saved: DemoSession | null = null;
  try {
    saved = JSON.parse(localStorage.getItem(KEYS.session) ?? 'null') as DemoSession | null;
  } catch {
    saved = null;
  }
  if (userId) {
    const token = saved?.userId === userId && saved.baseUrl === BASE_URL ? saved.token : undefined;
    await signIn(userId, token).catch((e: unknown) => log('error', `restoring the session failed: ${String(e)}`));
  } else {
    setSignedIn(null);
    window.manaDemo = { client: null, deviceId, userId: null, refresh };
    await renderProposals();
  }
}

wire();
void restore().finally(() => {
  document.body.dataset['ready'] = 'true';
});
