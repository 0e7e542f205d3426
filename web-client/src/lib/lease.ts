/**
 * Planning with a deadline. A claim is a lease: while the planner runs, this
 * context renews it (a re-claim by the holder, at half of what is left) and
 * the planner's AbortSignal fires when the lease is lost (another party holds
 * the occurrence now), when the time limit passes, or when the caller stops
 * (sign-out, a push event's time limit). Without renewal a plan longer than
 * the lease let the server plan the same occurrence too.
 */
import type { ClaimOutcome } from './occurrences.js';

export type PlanStop = 'lost' | 'timeout' | 'cancelled';

/** What a planner's signal is aborted with; `code` says why. Named AbortError, as fetch and friends expect. */
export class PlanAborted extends Error {
  readonly code: PlanStop;
  constructor(code: PlanStop) {
    super(`planning stopped: ${code}`);
    this.name = 'AbortError';
    this.code = code;
  }
}

/** Resolves after `ms`, or at once when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done);
    if (signal?.aborted) done();
  });
}

/**
 * Makes `call` until the server answers (granted or refused): `delay(i)` ms
 * before try i+1, none left when it returns undefined. A lost answer is
 * harmless to repeat: a re-claim by the holder renews, a second complete or
 * release by it is refused or accepted, never applied twice.
 */
export async function untilAnswered(call: () => Promise<ClaimOutcome>, delay: (i: number) => number | undefined, signal?: AbortSignal): Promise<ClaimOutcome> {
  for (let i = 0; ; i++) {
    const out = await call();
    const wait = delay(i);
    if (out.kind !== 'failed' || wait === undefined || signal?.aborted) return out;
    await sleep(wait, signal);
  }
}

/** The lease left in an answer: the server's own figure, else its expiry by this clock. */
export function leaseLeft(out: ClaimOutcome, now: number): number | undefined {
  if (out.kind !== 'granted') return undefined;
  const left = out.leaseMs ?? (out.leaseExpiresAt ? Date.parse(out.leaseExpiresAt) - now : undefined);
  // An unreadable expiry is no lease to keep, not one to renew in a tight loop.
  return left !== undefined && Number.isFinite(left) ? left : undefined;
}

export interface LeaseDeps {
  /** The lease left when planning starts; undefined (an older server said nothing): no renewal. */
  leaseMs: number | undefined;
  /** Re-claims as the holder. */
  renew: () => Promise<ClaimOutcome>;
  /** Planning stops after this long. */
  timeoutMs: number;
  /** The caller stopping; a PlanAborted reason keeps its code. */
  signal?: AbortSignal;
}

/** Below this much lease left, it is given up rather than risk planning past it. */
const LEASE_MARGIN_MS = 1_000;

/**
 * Runs `work` under the lease: resolves with its value, or rejects with its
 * error or with the PlanAborted that stopped it (a planner that ignores its
 * signal is left behind, not awaited).
 */
export async function underLease<T>(work: (signal: AbortSignal) => Promise<T>, deps: LeaseDeps): Promise<T> {
  const ac = new AbortController();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let done = false;
  const stop = (code: PlanStop): void => {
    if (!ac.signal.aborted) ac.abort(new PlanAborted(code));
  };
  const later = (ms: number, fn: () => void): void => {
    if (!done) timers.add(setTimeout(fn, ms));
  };
  const onParent = (): void => {
    const reason: unknown = deps.signal?.reason;
    stop(reason instanceof PlanAborted ? reason.code : 'cancelled');
  };
  deps.signal?.addEventListener('abort', onParent);
  if (deps.signal?.aborted) onParent();
  later(deps.timeoutMs, () => stop('timeout'));

  let expiresAt = deps.leaseMs === undefined ? undefined : Date.now() + deps.leaseMs;
  const schedule = (): void => {
    if (expiresAt === undefined) return;
    const left = expiresAt - Date.now();
    if (left <= LEASE_MARGIN_MS) return stop('lost');
    later(left / 2, () => void renew());
  };
  async function renew(): Promise<void> {
    const out = await deps.renew();
    if (done || ac.signal.aborted) return;
    if (out.kind === 'elsewhere') return stop('lost');
    const left = leaseLeft(out, Date.now());
    if (left !== undefined) expiresAt = Date.now() + left;
    schedule();
  }
  schedule();

  try {
    return await Promise.race([
      work(ac.signal),
      new Promise<never>((_, reject) => {
        const fail = () => reject(ac.signal.reason);
        ac.signal.addEventListener('abort', fail);
        if (ac.signal.aborted) fail();
      }),
    ]);
  } finally {
    done = true;
    for (const t of timers) clearTimeout(t);
    deps.signal?.removeEventListener('abort', onParent);
  }
}
