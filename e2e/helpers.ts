/**
 * Shared pieces of the e2e specs: the stack's addresses (set by
 * global-setup.ts), node-side calls to the coordinator / push service / stub
 * LLM, a superuser SQL client for counting, and demo-page helpers.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { test as base, expect, type BrowserContext, type CDPSession, type Page, type Request, type TestInfo } from '@playwright/test';
import postgres from 'postgres';

export { expect };

export const stack = {
  get base(): string {
    return required('E2E_BASE_URL');
  },
  get db(): string {
    return required('E2E_DB_URL');
  },
  get wpt(): string {
    return required('E2E_WPT_ORIGIN');
  },
  get llm(): string {
    return required('E2E_LLM_URL');
  },
};

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the specs through e2e/playwright.config.ts (its globalSetup starts the stack)`);
  return v;
}

async function call<T>(url: string, init: { method?: string; token?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(url, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: {
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      ...init.headers,
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: body as T };
}

async function ok<T>(what: string, p: Promise<{ status: number; body: T }>): Promise<T> {
  const r = await p;
  if (r.status < 200 || r.status >= 300) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export interface OccurrenceRow {
  iterationId: string;
  userId: string;
  missionId: string;
  dueAt: string;
  status: string;
  channel: 'ws' | 'push' | 'server' | null;
  claimedBy: string | null;
  attempts: number;
  lastError: string | null;
}

export interface IterationLike {
  id: string;
  startedAt?: string;
  source?: string;
  plan?: unknown[];
}

export interface MissionRecord {
  id: string;
  title?: string;
  nextRunAt?: string;
  iterations?: IterationLike[];
}

export interface TestSubscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
  clientHash: string;
}

/** A mission record as the webapp writes it (an hourly cadence, due at `dueAt`; `objective` e.g. end-to-end encrypted). */
function missionRecord(title: string, dueAt: Date, userId: string, now: Date, objective?: string) {
  return {
    id: randomUUID(),
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
    title,
    objective: objective ?? `Make visible progress on "${title}" this week.`,
    conceptMarkdown: '# e2e mission\n\nPropose small, concrete next steps.',
    inputs: [],
    cadence: { kind: 'interval', everyMinutes: 60 },
    state: 'active',
    nextRunAt: dueAt.toISOString(),
    iterations: [],
    userId,
  };
}

/** Node-side calls: what the webapp's sync, an operator, or the test harness would do. */
export const api = {
  async token(userId: string): Promise<string> {
    return (await ok<{ token: string }>('POST /dev/token', call(`${stack.base}/dev/token`, { body: { userId } }))).token;
  },
  /** Inserts a mission the way the demo does (real sync_changes rows through the dev endpoint). */
  async createMission(token: string, opts: { title: string; dueInMs: number; userId: string; objective?: string; now?: Date }): Promise<string> {
    const [id] = await api.createMissions(token, { ...opts, titles: [opts.title] });
    return id!;
  },
  /** Several missions falling due at one common instant (`now` + `dueInMs`), written in one request. */
  async createMissions(token: string, opts: { titles: string[]; dueInMs: number; userId: string; objective?: string; now?: Date }): Promise<string[]> {
    const now = opts.now ?? new Date();
    const records = opts.titles.map((title) => missionRecord(title, new Date(now.getTime() + opts.dueInMs), opts.userId, now, opts.objective));
    const changes = records.map((data) => ({ appId: 'ai', tableName: 'aiMissions', recordId: data.id, op: 'insert', data }));
    await ok('POST /dev/sync/changes', call(`${stack.base}/dev/sync/changes`, { token, body: { changes } }));
    return records.map((r) => r.id);
  },
  async missions(token: string): Promise<MissionRecord[]> {
    return ok<MissionRecord[]>('GET /dev/sync/missions', call(`${stack.base}/dev/sync/missions`, { token }));
  },
  /** The operator's view of a user's occurrences (service key). */
  async occurrences(userId: string): Promise<OccurrenceRow[]> {
    return ok<OccurrenceRow[]>(
      'GET /internal/occurrences',
      call(`${stack.base}/internal/occurrences?userId=${encodeURIComponent(userId)}`, { headers: { 'x-service-key': 'dev-service-key' } }),
    );
  },
  async vapidPublicKey(): Promise<string> {
    return (await ok<{ publicKey: string }>('GET /v1/push/vapid-public-key', call(`${stack.base}/v1/push/vapid-public-key`))).publicKey;
  },
  async putSubscription(token: string, deviceId: string, sub: { endpoint: string; keys: { p256dh: string; auth: string } }): Promise<number> {
    const r = await call(`${stack.base}/v1/devices/${encodeURIComponent(deviceId)}/push-subscription`, { method: 'PUT', token, body: { endpoint: sub.endpoint, expirationTime: null, keys: sub.keys } });
    if (r.status !== 200 && r.status !== 201) throw new Error(`PUT push-subscription: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    return r.status;
  },
  /** User prompts the stub LLM received that mention `text` (a mission title): how often the server planned it. */
  async llmCallsMentioning(text: string): Promise<number> {
    const calls = await ok<{ user: string }[]>('GET stub /calls', call(`${stack.llm}/calls`));
    return calls.filter((c) => c.user.includes(text)).length;
  },
};

/** The local push service (web-push-testing), over its HTTP API. */
export const pushService = {
  async subscribe(applicationServerKey: string): Promise<TestSubscription> {
    // userVisibleOnly must be the STRING 'true' for this server.
    const body = await ok<{ data: TestSubscription }>('wpt /subscribe', call(`${stack.wpt}/subscribe`, { body: { applicationServerKey, userVisibleOnly: 'true' } }));
    return body.data;
  },
  async notifications(clientHash: string): Promise<string[]> {
    return (await ok<{ data: { messages: string[] } }>('wpt /get-notifications', call(`${stack.wpt}/get-notifications`, { body: { clientHash } }))).data.messages;
  },
};

export type Db = postgres.Sql;

/**
 * How many times an iteration was planned: the distinct `startedAt` values
 * of iterations with this id across every sync_changes row (one plan run
 * writes one startedAt; the demo planner's re-writes repeat it), with the
 * writers' sources.
 */
export async function planRuns(sql: Db, iterationId: string): Promise<{ runs: number; sources: string[]; rows: number }> {
  const rows = await sql<{ started: string | null; source: string | null }[]>`
    SELECT it->>'startedAt' AS started, it->>'source' AS source
    FROM sync_changes, jsonb_array_elements(CASE WHEN jsonb_typeof(data->'iterations') = 'array' THEN data->'iterations' ELSE '[]'::jsonb END) AS it
    WHERE table_name = 'aiMissions' AND it->>'id' = ${iterationId}`;
  const runs = new Set(rows.map((r) => `${r.started}|${r.source}`));
  return { runs: runs.size, sources: [...new Set(rows.map((r) => r.source ?? '?'))].sort(), rows: rows.length };
}

export async function presenceCount(sql: Db, userId: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM mana_ai.presence WHERE user_id = ${userId}`;
  return row?.n ?? 0;
}

/** Waits for the (single) occurrence of a mission and returns it once `done` accepts it. */
export async function waitForOccurrence(userId: string, missionId: string, done: (o: OccurrenceRow) => boolean, timeoutMs = 20_000): Promise<OccurrenceRow> {
  let last: OccurrenceRow | undefined;
  await expect
    .poll(
      async () => {
        last = (await api.occurrences(userId)).find((o) => o.missionId === missionId);
        return last ? done(last) : false;
      },
      { timeout: timeoutMs, intervals: [100, 200, 300] },
    )
    .toBe(true)
    .catch((e: unknown) => {
      throw new Error(`occurrence of mission ${missionId}: ${JSON.stringify(last ?? 'none yet')}\n${String(e)}`);
    });
  return last!;
}

export const demoUrl = (deviceId: string, query = '') => `${stack.base}/demo?device=${encodeURIComponent(deviceId)}${query}`;

/** Opens the demo as `deviceId` and signs in as `userId` (or waits for the restored session); `query` e.g. `&tokenTtl=8`. */
export async function openDemo(context: BrowserContext, deviceId: string, userId: string, query = ''): Promise<Page> {
  const page = await context.newPage();
  await page.goto(demoUrl(deviceId, query));
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#device-id')).toHaveText(deviceId);
  if ((await page.locator('#signed-in-as').textContent()) !== userId) {
    await page.locator('#user-id').fill(userId);
    await page.locator('#sign-in').click();
  }
  await expect(page.locator('#signed-in-as')).toHaveText(userId);
  await expect(page.locator('#status')).toHaveAttribute('data-state', 'open');
  return page;
}

/** Log entries of one event type on the demo page. */
export const logEntries = (page: Page, event: string) => page.locator(`#log > [data-testid=log-entry][data-event="${event}"]`);

/** The page logged no client or demo error (network errors of an offline test excepted: do not call it there). */
export async function expectNoErrors(page: Page): Promise<void> {
  const errors = await logEntries(page, 'error').allInnerTexts();
  expect(errors, 'errors in the demo event log').toEqual([]);
}

export const proposalsOf = (page: Page, iterationId: string) => page.locator(`[data-testid=proposal][data-iteration-id="${iterationId}"]`);

/** Records the occurrence API calls (claim/complete/release) the context's pages make, with their answers. */
export function recordOccurrenceCalls(context: BrowserContext): { calls: { action: string; iterationId: string; status: number }[] } {
  const calls: { action: string; iterationId: string; status: number }[] = [];
  context.on('requestfinished', (req: Request) => {
    const m = /\/v1\/occurrences\/([0-9a-f-]{36})\/(claim|complete|release)$/.exec(new URL(req.url()).pathname);
    if (!m || req.method() !== 'POST') return;
    void req.response().then((res) => calls.push({ action: m[2]!, iterationId: m[1]!, status: res?.status() ?? 0 }));
  });
  context.on('requestfailed', (req: Request) => {
    const m = /\/v1\/occurrences\/([0-9a-f-]{36})\/(claim|complete|release)$/.exec(new URL(req.url()).pathname);
    if (m && req.method() === 'POST') calls.push({ action: m[2]!, iterationId: m[1]!, status: 0 });
  });
  return { calls };
}

/** Saves a full-page screenshot under the test's output dir (test-results/e2e/<test>/<name>.png). */
export async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<string> {
  const path = testInfo.outputPath(`${name}.png`);
  mkdirSync(dirname(path), { recursive: true });
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** A unique id per test, e.g. for user and device ids (the stack is shared by every spec). */
export const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

export const test = base.extend<{}, { sql: Db }>({
  sql: [
    async ({}, use) => {
      const sql = postgres(stack.db, { max: 2, onnotice: () => {} });
      await use(sql);
      await sql.end({ timeout: 5 });
    },
    { scope: 'worker' },
  ],
});

interface Registration {
  registrationId: string;
  scopeURL: string;
  isDeleted: boolean;
}
interface Version {
  registrationId: string;
  versionId: string;
  scriptURL: string;
  runningStatus: string;
  status: string;
}

/** Enables the ServiceWorker domain and resolves the demo's registration once its worker is activated. */
export async function demoRegistration(cdp: CDPSession): Promise<string> {
  const registrations = new Map<string, Registration>();
  const versions = new Map<string, Version>();
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e: { registrations: Registration[] }) => {
    for (const r of e.registrations) registrations.set(r.registrationId, r);
  });
  cdp.on('ServiceWorker.workerVersionUpdated', (e: { versions: Version[] }) => {
    for (const v of e.versions) versions.set(v.versionId, v);
  });
  await cdp.send('ServiceWorker.enable');
  let id: string | undefined;
  await expect
    .poll(() => {
      const reg = [...registrations.values()].find((r) => r.scopeURL === `${stack.base}/demo/` && !r.isDeleted);
      const active = reg && [...versions.values()].some((v) => v.registrationId === reg.registrationId && v.status === 'activated');
      id = active ? reg.registrationId : undefined;
      return id;
    }, { message: 'the demo service worker registration (scope /demo/) is activated' })
    .toBeTruthy();
  return id!;
}

/**
 * Offline Chromium cannot subscribe: stands in for the browser's PushManager
 * (window.manaDemoPushManager, which the demo uses), handing out the push
 * service's subscription; window.manaDemoPushCalls records what was asked of it.
 */
export async function installFakePushManager(context: BrowserContext, sub: { endpoint: string; keys: { p256dh: string; auth: string } }): Promise<void> {
  await context.addInitScript((fake: { endpoint: string; keys: { p256dh: string; auth: string } }) => {
    const calls: unknown[] = [];
    let current: unknown = null;
    const b64url = (buf: ArrayBuffer | ArrayBufferView) => {
      const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
      return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    };
    (window as unknown as { manaDemoPushCalls: unknown[] }).manaDemoPushCalls = calls;
    window.manaDemoPushManager = {
      async getSubscription() {
        calls.push('getSubscription');
        return current as never;
      },
      async subscribe(options: { userVisibleOnly: boolean; applicationServerKey: BufferSource }) {
        const key = options.applicationServerKey;
        calls.push({ subscribe: { userVisibleOnly: options.userVisibleOnly, applicationServerKey: b64url(key) } });
        const keyBytes = key instanceof ArrayBuffer ? key.slice(0) : (key.buffer.slice(key.byteOffset, key.byteOffset + key.byteLength) as ArrayBuffer);
        const subscription = {
          endpoint: fake.endpoint,
          options: { applicationServerKey: keyBytes },
          toJSON: () => ({ endpoint: fake.endpoint, expirationTime: null, keys: fake.keys }),
          unsubscribe: async () => {
            calls.push('unsubscribe');
            current = null;
            return true;
          },
        };
        current = subscription;
        return subscription;
      },
    };
  }, { endpoint: sub.endpoint, keys: sub.keys });
}
