/**
 * The demo page's panels: the element lookup, the event log, the push pill,
 * and the proposals, occurrences and missions views (each re-rendered only
 * when what it shows changed).
 */
import { listProposals, setProposalStatus, type Proposal } from './store.js';
import type { Mission, OccurrenceRow } from './dev-api.js';
import { h, missionsTable, occurrenceRow, proposalCard } from './view.js';

export function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} missing from the demo page`);
  return found as T;
}

export function log(event: string, text: string): void {
  const list = el('log');
  const time = new Date().toLocaleTimeString();
  list.prepend(h('li', { 'data-testid': 'log-entry', 'data-event': event }, h('time', {}, time), h('span', { class: 'ev' }, event), text));
  while (list.children.length > 300) list.lastElementChild?.remove();
}

export function setPushStatus(state: 'unknown' | 'enabled' | 'disabled' | 'error', text: string): void {
  const pill = el('push-status');
  pill.dataset['state'] = state;
  pill.textContent = `push: ${text}`;
}

const rendered = { proposals: '', occurrences: '', missions: '' };

/** Re-renders the proposals (`force`: even if the list looks unchanged, e.g. after it was cleared). */
export async function renderProposals(force = false): Promise<void> {
  if (force) rendered.proposals = '';
  const list = await listProposals().catch(() => [] as Proposal[]);
  const signature = JSON.stringify(list.map((p) => [p.id, p.status]));
  if (signature === rendered.proposals) return;
  rendered.proposals = signature;
  const box = el('proposals');
  if (list.length === 0) {
    box.replaceChildren(h('p', { class: 'empty' }, 'No proposals yet.'));
    return;
  }
  box.replaceChildren(...list.map((p) => proposalCard(p, (q, status) => void decide(q, status))));
}

async function decide(p: Proposal, status: 'approved' | 'rejected'): Promise<void> {
  await setProposalStatus(p.id, status);
  log(status === 'approved' ? 'approved' : 'rejected', `${status} "${p.summary}" (local only; proposals never sync)`);
  await renderProposals();
}

export function renderOccurrences(rows: OccurrenceRow[], deviceId: string, missionName: (id: string) => string): void {
  const sorted = [...rows].sort((a, b) => b.dueAt.localeCompare(a.dueAt));
  // Mission names are part of what is shown: re-render once a mission loads after its occurrence.
  const signature = JSON.stringify(sorted.map((o) => [o, missionName(o.missionId)]));
  if (signature === rendered.occurrences) return;
  rendered.occurrences = signature;
  const body = el('occurrences');
  if (sorted.length === 0) {
    body.replaceChildren(h('tr', {}, h('td', { colspan: '8', class: 'empty' }, 'No occurrences yet.')));
    return;
  }
  body.replaceChildren(...sorted.map((o) => occurrenceRow(o, deviceId, missionName)));
}

export function renderMissions(missions: Iterable<Mission>): void {
  const list = [...missions].sort((a, b) => String(b.createdAt ?? '').localeCompare(String(a.createdAt ?? '')));
  const signature = JSON.stringify(list.map((m) => [m.id, m.title, m.state, m.nextRunAt, Array.isArray(m.iterations) ? m.iterations.length : 0]));
  if (signature === rendered.missions) return;
  rendered.missions = signature;
  const box = el('missions');
  if (list.length === 0) {
    box.replaceChildren(h('p', { class: 'empty' }, 'No missions yet.'));
    return;
  }
  box.replaceChildren(missionsTable(list));
}
