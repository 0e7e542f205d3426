#!/usr/bin/env node
/**
 * Patches postgres.js (3.4.9, the latest release) against porsager/postgres
 * #1208 / #1154: when a connection closes with a small write pending — any
 * transaction in flight when the database restarts — `nextWrite` runs from a
 * setImmediate with `socket === null` and throws an uncatchable TypeError
 * that kills the process. And the teardown clears that timer without
 * resetting it, so the connection can never write again (its reconnects
 * then hang until connect_timeout, over and over).
 *
 * Behind both: a transaction whose connection closed keeps sending its
 * queries (the rest of the callback, then ROLLBACK) to that connection,
 * which the pool is already reconnecting for someone else: its bytes went
 * out in the middle of the new connection's startup ("expected password
 * response, got message type 80", thrown uncaught), or the connection was
 * moved to the "full" queue and never used again, until the pool had none.
 *
 * And a query sent between a connection's 'error' and 'close' events was
 * never settled: the reconnected connection matched the next answer to it,
 * and the query waiting for that answer hung for ever.
 *
 * The patch: a transaction's query after its connection closed is rejected
 * with CONNECTION_CLOSED (index.js); a write with no socket settles the
 * pending queries instead of throwing, as in the open upstream PRs (#1168,
 * #1176, #1209); teardown resets the timer and the buffered bytes; a close
 * settles every query still pending and forgets the exchange in progress;
 * a reserved connection that closed is not handed on by its release, and a
 * reserve waiting through an outage is neither lost nor given a connection
 * after it failed.
 * One more edit is for cost, not correctness: a pipelined batch goes out in
 * one socket write up to 16 KiB instead of 1 KiB (COALESCE below).
 * Idempotent; run by `postinstall` and by the Dockerfile. package.json pins
 * the exact version the edits are written for; any other version, or a
 * source that no longer matches, fails the install (exit 1) rather than
 * ship an unpatched driver, and the start refuses an unpatched driver too
 * (src/db/driver-patch.ts).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MARKER = 'mana-ai patch: porsager/postgres#1208';
/** The package folder; an argument overrides it (to check the patch on a copy). */
const root = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'postgres');

const GUARD = {
  from: `  function nextWrite(fn) {
    const x = socket.write(chunk, fn)`,
  to: `  function nextWrite(fn) {
    if (!socket) { // ${MARKER}
      nextWriteTimer !== null && clearImmediate(nextWriteTimer)
      chunk = nextWriteTimer = null
      error(Errors.connection('CONNECTION_CLOSED', options))
      return false
    }
    const x = socket.write(chunk, fn)`,
  count: 1,
};
const RESET = {
  from: `    clearImmediate(nextWriteTimer)\n`,
  to: `    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null // ${MARKER}\n`,
  count: 2,
};
/** closed() settled pending queries only when the close had no error, trusting the 'error' event; a query sent between the two stayed in `sent` and the reconnected connection answered it instead of the next one, for ever. */
const SETTLE = {
  from: `    !hadError && (query || sent.length) && error(Errors.connection('CONNECTION_CLOSED', options, socket))`,
  to: `    if (query || sent.length) error(Errors.connection('CONNECTION_CLOSED', options, socket)) // ${MARKER}`,
  count: 1,
};
/** The closed socket's half-finished exchange (a stored ErrorResponse, partial rows) was delivered to the first query of the next connection: a healthy transaction failed with the old backend's 57P01. */
const FORGET = {
  from: SETTLE.to,
  to: `${SETTLE.to}
    query = results = errorResponse = null // ${MARKER}
    result = new Result()`,
  count: 1,
};
const TX = {
  from: `        q.catch(e => uncaughtError || (uncaughtError = e))
        c.queue === full`,
  to: `        q.catch(e => uncaughtError || (uncaughtError = e))
        if (!c.reserved) // ${MARKER}: the connection closed under this transaction
          return q.reject(Errors.connection('CONNECTION_CLOSED', options))
        c.queue === full`,
  count: 1,
};

/**
 * A reserved connection (sql.reserve(), src/db/pipelined-tx.ts) that closed
 * under its holder was put back in the open queue by release(), socket and
 * all gone: every query the pool gave it failed with CONNECTION_CLOSED, a
 * healthy pass among them, until the process restarted (db-outage.test.ts,
 * the first pass after the database came back). A close ends the
 * reservation (the pool takes the connection back and may reconnect it for
 * someone else), so the holder's later queries are rejected and its release
 * does nothing. `mine` tells this reservation from a later one on the same
 * connection.
 */
const RESERVE = {
  from: `    const sql = Sql(handler)
    sql.release = () => {
      c.reserved = null
      onopen(c)
    }

    return sql

    function handler(q) {
      c.queue === full`,
  to: `    const sql = Sql(handler)
    const mine = c.reserved // ${MARKER}: a close ends this reservation (onclose clears c.reserved)
    sql.release = () => {
      if (c.reserved !== mine) // ${MARKER}: closed while reserved; the pool took the connection back then
        return
      c.reserved = null
      onopen(c)
    }

    return sql

    function handler(q) {
      if (c.reserved !== mine) // ${MARKER}: the connection closed under this reservation
        return q.reject(Errors.connection('CONNECTION_CLOSED', options))
      c.queue === full`,
  count: 1,
};
/**
 * A reserve whose connect failed was rejected but stayed in the pool's
 * queue; the next connection to open was handed to it, and so to nobody:
 * a connection lost for good per reserve that failed in an outage.
 */
const RESERVE_FAILED = {
  from: `        const query = { reserve: resolve, reject }`,
  to: `        const query = { reserve: resolve, reject: e => (queries.remove(query), reject(e)) } // ${MARKER}: a failed reserve leaves the queue`,
  count: 1,
};

/**
 * A reserve waits in the pool's queue and is settled from there (onopen).
 * A connection that closed took the next waiting query off the queue to
 * reconnect with; a reserve taken so was dropped once connected, and its
 * holder waited for ever (a pipelinedTx after an outage). It stays queued.
 */
const RESERVE_REQUEUE = {
  from: `    queries.length && connect(c, queries.shift())`,
  to: `    if (queries.length) { // ${MARKER}: a reserve stays queued, settled from the queue once a connection opens
      const q = queries.shift()
      q.reserve && queries.push(q)
      connect(c, q)
    }`,
  count: 1,
};

/**
 * Not a fix, a cost: queries issued in one tick go out in one socket write
 * unless the bytes buffered pass 1 KiB, when they are written at once. A
 * transaction pipelined with its BEGIN and COMMIT (src/db/pipelined-tx.ts)
 * whose statements carry a plan or a mission's iterations passes 1 KiB at
 * nearly every statement, so it cost a write per statement, and a socket
 * write's system call is the largest item of the server planner's CPU.
 * Flushed at 16 KiB, such a batch is one write; the buffer is still written
 * in the same turn of the event loop.
 */
const COALESCE = {
  from: `    if (fn || chunk.length >= 1024)`,
  to: `    if (fn || chunk.length >= 16384) // ${MARKER}: one write for a pipelined batch`,
  count: 1,
};

const occurrences = (src, text) => src.split(text).length - 1;

/** Applies each edit unless already applied; null when the source does not match. */
function apply(src, edits) {
  let out = src;
  for (const e of edits) {
    if (occurrences(out, e.to) === e.count) continue;
    if (occurrences(out, e.from) !== e.count) return null;
    out = out.split(e.from).join(e.to);
  }
  return out;
}

function patch(file, edits) {
  const src = readFileSync(file, 'utf8');
  const out = apply(src, edits);
  if (out === null) return null;
  if (out === src) return 'already patched';
  writeFileSync(file, out);
  return 'patched';
}

/** The version the edits are written for; package.json pins exactly this one. */
const EXPECTED_VERSION = '3.4.9';

function fail(message) {
  console.error(`patch-postgres: ${message}`);
  process.exit(1);
}

if (!existsSync(root)) fail(`expected postgres ${EXPECTED_VERSION} at ${root}; it is not installed`);
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
if (version !== EXPECTED_VERSION) {
  fail(`expected postgres ${EXPECTED_VERSION}, found ${version}: check whether porsager/postgres#1208 is fixed there, then update the edits and the pin in package.json together`);
}
let patchedFiles = 0;
for (const dir of ['src', 'cjs/src', 'cf/src']) {
  for (const [name, edits] of [['connection.js', [GUARD, RESET, SETTLE, FORGET, COALESCE]], ['index.js', [TX, RESERVE, RESERVE_FAILED, RESERVE_REQUEUE]]]) {
    const rel = `${dir}/${name}`;
    const file = join(root, rel);
    if (!existsSync(file)) continue;
    const outcome = patch(file, edits);
    if (!outcome) fail(`${rel} of postgres ${version} does not match the expected source; not patched`);
    patchedFiles++;
    console.log(`patch-postgres: ${rel} ${outcome} (postgres ${version})`);
  }
}
if (patchedFiles === 0) fail(`no source files found under ${root}`);
