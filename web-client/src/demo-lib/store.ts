/**
 * The demo's own local data, in IndexedDB (db `mana-ai-demo`) so the page and
 * its service worker share it: the signed-in session and the proposals.
 * Proposals are LOCAL to this browser, like the webapp's `pendingProposals`:
 * they never sync.
 */

import { lazyDatabase } from '../lib/idb.js';

export interface DemoSession {
  userId: string;
  token: string;
  deviceId: string;
  baseUrl: string;
}

export type ProposalStatus = 'pending' | 'approved' | 'rejected';

export interface Proposal {
  /** The plan step id: `${iterationId}-${index}`. */
  id: string;
  missionId: string;
  missionTitle: string;
  iterationId: string;
  summary: string;
  rationale?: string;
  toolName?: string;
  params?: Record<string, unknown>;
  status: ProposalStatus;
  /** Who planned it: this device's demo planner, or the server's fallback planner. */
  source: 'browser' | 'server';
  createdAt: string;
}

const DB_NAME = 'mana-ai-demo';
const KV = 'kv';
const PROPOSALS = 'proposals';

/** The demo's database, shared by the page and its worker. */
const { open } = lazyDatabase(DB_NAME, (d) => {
  d.createObjectStore(KV);
  d.createObjectStore(PROPOSALS, { keyPath: 'id' }).createIndex('iterationId', 'iterationId');
});

async function run<T>(store: string, mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T> | void): Promise<T | undefined> {
  const db = await open();
  return new Promise<T | undefined>((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const req = fn(tx.objectStore(store));
    tx.oncomplete = () => resolve(req ? req.result : undefined);
    tx.onerror = () => reject(tx.error ?? new Error('demo database transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('demo database transaction aborted'));
  });
}

export async function loadSession(): Promise<DemoSession | undefined> {
  const value: unknown = await run(KV, 'readonly', (s) => s.get('session'));
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Partial<DemoSession>;
  return v.userId && v.token && v.deviceId && v.baseUrl ? (v as DemoSession) : undefined;
}

export async function saveSession(session: DemoSession | null): Promise<void> {
  await run<unknown>(KV, 'readwrite', (s) => {
    if (session) s.put(session, 'session');
    else s.delete('session');
  });
}

/** Adds proposals; one that exists already (same step id) keeps its status. */
export async function addProposals(proposals: readonly Proposal[]): Promise<void> {
  const db = await open();
  await new Promise<void>((resolve, reject) => {
    const tx = db.transaction(PROPOSALS, 'readwrite');
    const store = tx.objectStore(PROPOSALS);
    for (const p of proposals) {
      // Exists already: keep it. preventDefault keeps the transaction alive; stopPropagation
      // keeps the error from bubbling to tx.onerror, which would reject a successful add.
      store.add(p).onerror = (ev) => {
        ev.preventDefault();
        ev.stopPropagation();
      };
    }
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('saving proposals failed'));
  });
}

/** Drops every local proposal (sign-out: the next user of this browser must not see them). */
export async function clearProposals(): Promise<void> {
  await run<undefined>(PROPOSALS, 'readwrite', (s) => void s.clear());
}

export async function listProposals(): Promise<Proposal[]> {
  const all = (await run<unknown[]>(PROPOSALS, 'readonly', (s) => s.getAll())) ?? [];
  return (all as Proposal[]).sort((a, b) => b.createdAt.localeCompare(a.createdAt) || a.id.localeCompare(b.id, 'en', { numeric: true }));
}

export async function setProposalStatus(id: string, status: ProposalStatus): Promise<void> {
  const db = await open();
  await new Promise<void>((resolve, reject) => {
    const tx = db.transaction(PROPOSALS, 'readwrite');
    const store = tx.objectStore(PROPOSALS);
    const req = store.get(id);
    req.onsuccess = () => {
      const p = req.result as Proposal | undefined;
      if (p) store.put({ ...p, status });
    };
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('updating the proposal failed'));
  });
}

/** Page ↔ worker notifications ("proposals changed", worker log lines). */
export const DEMO_CHANNEL = 'mana-ai-demo';

export type DemoMessage =
  | { type: 'proposals-changed' }
  | { type: 'worker-log'; event: string; text: string };

export function broadcast(message: DemoMessage): void {
  if (typeof BroadcastChannel === 'undefined') return;
  const channel = new BroadcastChannel(DEMO_CHANNEL);
  channel.postMessage(message);
  channel.close();
}
