/**
 * Fails a test file that leaves a handle keeping the event loop alive: a
 * server still listening, a socket, a child process, a ref'd timer, a
 * database pool not ended. Loaded by vitest before every test file
 * (`setupFiles`): it notes what is alive before the file's own code runs and,
 * after the file's last hook, waits for closes in flight to finish, then
 * compares. Unref'd handles (which never keep a process alive) do not count,
 * since `process.getActiveResourcesInfo()` leaves them out.
 */
import { afterAll } from 'vitest';

/** Closing sockets and servers completes a few event-loop turns later; this long, at most. */
const SETTLE_MS = 3000;
/** Resources that are not handles of the test's making: a pending fs call, a write in flight, vitest's own RPC. */
const IGNORED = new Set(['FSReqCallback', 'FSReqPromise', 'FileHandleCloseReq', 'WriteWrap', 'ShutdownWrap', 'GetAddrInfoReqWrap', 'Immediate']);

function census(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) {
    if (!IGNORED.has(type)) counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

/** Types with more live resources now than at the start, and how many more. */
export function leakedSince(before: ReadonlyMap<string, number>, now: ReadonlyMap<string, number>): Record<string, number> {
  const extra: Record<string, number> = {};
  for (const [type, n] of now) {
    const more = n - (before.get(type) ?? 0);
    if (more > 0) extra[type] = more;
  }
  return extra;
}

const before = census();

afterAll(async () => {
  if (process.env['LEAK_CHECK'] === '0') return;
  const deadline = Date.now() + SETTLE_MS;
  let extra = leakedSince(before, census());
  while (Object.keys(extra).length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50).unref());
    extra = leakedSince(before, census());
  }
  if (Object.keys(extra).length > 0) {
    throw new Error(
      `this file leaves handles open after its last test (${Object.entries(extra).map(([t, n]) => `${n} × ${t}`).join(', ')}): ` +
        'close every server, socket, pool and child it starts, and clear or unref its timers (LEAK_CHECK=0 skips this check while debugging)',
    );
  }
}, SETTLE_MS + 2000);
