/**
 * The demo page's DOM pieces (pure functions of their inputs; demo.ts owns
 * the state and decides when to re-render).
 */
import type { MissionClientEvent } from '../index.js';
import type { Mission, OccurrenceRow } from './dev-api.js';
import type { Proposal } from './store.js';

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

export const short = (id: string) => id.slice(0, 8);

export function relative(iso: string | null | undefined): string {
  if (!iso) return '—';
  const ms = Date.parse(iso) - Date.now();
  if (Number.isNaN(ms)) return iso;
  const s = Math.round(Math.abs(ms) / 1000);
  const text = s < 90 ? `${s}s` : s < 5400 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

/** One log line for a client event. */
export function describeEvent(e: MissionClientEvent, missionName: (missionId: string) => string): string {
  switch (e.type) {
    case 'connected':
      return `WebSocket authenticated as ${e.userId} (device ${e.deviceId})`;
    case 'disconnected':
      return `WebSocket closed (${e.code}${e.reason ? ` ${e.reason}` : ''})${e.willReconnect ? `; reconnecting in ${e.reconnectInMs ?? 0} ms` : ''}`;
    case 'nudge':
      return `nudge arrived via ${e.via} for ${missionName(e.missionId)} · iteration ${short(e.iterationId)}`;
    case 'skipped':
      return `iteration ${short(e.iterationId)} skipped: ${e.reason === 'locked' ? 'another tab is handling it' : `already handled here (${e.state ?? '?'})`}`;
    case 'claimed':
      return `claimed iteration ${short(e.iterationId)}${e.leaseExpiresAt ? `; lease until ${new Date(e.leaseExpiresAt).toLocaleTimeString()}` : ''}`;
    case 'planned':
      return `planned ${e.steps ?? '?'} steps for ${missionName(e.missionId)}; occurrence ${e.completed ? 'completed' : 'NOT completed (see error)'}`;
    case 'released':
      return `planning stopped (${e.reason}); given back to the server`;
    case 'elsewhere':
      return `iteration ${short(e.iterationId)} is handled elsewhere (HTTP ${e.status} ${e.code})`;
    case 'staged':
      return `staged ${e.steps} server-planned proposals for ${missionName(e.missionId)}`;
    case 'mission-changed':
      return `the server wrote to ${missionName(e.missionId)}${e.iterationId ? ` (iteration ${short(e.iterationId)})` : ''}; pulling it now`;
    case 'push-enabled':
      return `push enabled (${e.endpointOrigin})${e.renewed ? ', subscription renewed for a new key' : ''}`;
    case 'push-disabled':
      return 'push disabled';
    case 'warning':
      return `[${e.code}] ${e.message}`;
    case 'signed-out':
      return `signed out: push unsubscribed, socket closed, ${e.cleared} local records forgotten`;
    case 'error':
      return `[${e.stage}] ${e.message}`;
  }
}

/** A proposal card with its approve/reject buttons. */
export function proposalCard(p: Proposal, decide: (p: Proposal, status: 'approved' | 'rejected') => void): HTMLElement {
  const approve = h('button', { 'data-testid': 'approve' }, 'Approve');
  const reject = h('button', { 'data-testid': 'reject', class: 'secondary' }, 'Reject');
  approve.disabled = reject.disabled = p.status !== 'pending';
  approve.addEventListener('click', () => decide(p, 'approved'));
  reject.addEventListener('click', () => decide(p, 'rejected'));
  return h(
    'article',
    {
      class: 'proposal',
      'data-testid': 'proposal',
      'data-proposal-id': p.id,
      'data-iteration-id': p.iterationId,
      'data-mission-id': p.missionId,
      'data-status': p.status,
      'data-source': p.source,
    },
    h('div', {}, h('strong', {}, p.summary)),
    h(
      'div',
      { class: 'meta' },
      `${p.missionTitle} · ${p.source === 'server' ? 'planned by the server (fallback)' : 'planned on this device by the demo planner'} · `,
      h('code', {}, `${p.toolName ?? 'note'}(${JSON.stringify(p.params ?? {})})`),
    ),
    ...(p.rationale ? [h('div', { class: 'meta' }, `Why: ${p.rationale}`)] : []),
    h('div', { class: 'actions' }, approve, reject, h('span', { class: 'pill', 'data-testid': 'proposal-status' }, p.status)),
  );
}

/** A row of the occurrences table; `mine` when this device holds the claim. */
export function occurrenceRow(o: OccurrenceRow, deviceId: string, missionName: (missionId: string) => string): HTMLTableRowElement {
  const mine = o.mine === true;
  return h(
    'tr',
    {
      'data-testid': 'occurrence-row',
      'data-iteration-id': o.iterationId,
      'data-mission-id': o.missionId,
      'data-status': o.status,
      'data-mine': String(mine),
      ...(mine ? { class: 'mine' } : {}),
    },
    h('td', {}, missionName(o.missionId)),
    h('td', { class: 'mono', title: o.iterationId }, short(o.iterationId)),
    h('td', { title: o.dueAt }, relative(o.dueAt)),
    h('td', {}, h('span', { class: 'pill' }, o.status)),
    h('td', {}, o.channel ?? '—'),
    h('td', { class: 'mono' }, o.claimedBy ? (mine ? `${deviceId} (this device)` : `a ${o.claimedBy}`) : '—'),
    h('td', {}, String(o.attempts ?? 0)),
    h('td', {}, o.reason?.message ?? ''),
  );
}

/** The missions table. */
export function missionsTable(list: readonly Mission[]): HTMLTableElement {
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Title'), h('th', {}, 'State'), h('th', {}, 'Next run'), h('th', {}, 'Iterations'))),
    h(
      'tbody',
      {},
      ...list.map((m) => {
        const its = Array.isArray(m.iterations) ? m.iterations : [];
        const server = its.filter((it) => it?.source === 'server').length;
        return h(
          'tr',
          { 'data-testid': 'mission-row', 'data-mission-id': m.id },
          h('td', {}, typeof m.title === 'string' ? m.title : m.id),
          h('td', {}, String(m.state ?? '—')),
          h('td', { title: String(m.nextRunAt ?? '') }, relative(m.nextRunAt)),
          h('td', {}, `${its.length}${server ? ` (${server} by the server)` : ''}`),
        );
      }),
    ),
  );
}

/**
 * Resolves once the registration has an active worker. Not
 * `navigator.serviceWorker.ready`: the page at /demo is outside the /demo/
 * scope, and `ready` only resolves for a page's own scope.
 */
export function activated(reg: ServiceWorkerRegistration, timeoutMs = 15_000): Promise<void> {
  if (reg.active) return Promise.resolve();
  const worker = reg.installing ?? reg.waiting;
  if (!worker) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('service worker did not activate in time')), timeoutMs);
    worker.addEventListener('statechange', () => {
      if (worker.state === 'activated') {
        clearTimeout(timer);
        resolve();
      } else if (worker.state === 'redundant') {
        clearTimeout(timer);
        reject(new Error('service worker became redundant'));
      }
    });
  });
}
