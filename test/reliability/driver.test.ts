/**
 * The postgres.js patch (scripts/patch-postgres.mjs, porsager/postgres
 * #1208): a transaction whose connection the server closes under it must
 * reject with a catchable error — never kill the process with a TypeError
 * thrown from a setImmediate, never leave a connection answering the wrong
 * query (a hang), never hand the old backend's error to the next healthy
 * transaction. A database restart with passes in flight does exactly this
 * to the coordinator (found by db-outage.test.ts: the child died with
 * "Cannot read properties of null (reading 'write')"). Unpatched, this
 * test's child dies in the first round. And a reserved connection whose
 * backend goes must not be handed to anyone after its holder releases it
 * (found by db-outage.test.ts too: the first pass after the database came
 * back failed on the planner's dead reserved connection).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createTestDb, type TestDb } from '../support/db.js';
import { report, SOAK } from './support/ledger.js';

const ROUNDS = SOAK ? 300 : 30;
let db: TestDb;

beforeAll(async () => {
  db = await createTestDb({ migrate: false, poolMax: 1 });
});

afterAll(async () => {
  await db?.drop();
});

it(`survives ${ROUNDS} rounds of a backend terminated mid-transaction, as many under a reserved connection, and outages with reserves waiting`, async () => {
  const script = fileURLToPath(new URL('./support/driver-chaos.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, db.url, String(ROUNDS)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const result = out.trim() ? (JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>) : {};
  await report('driver', { rounds: ROUNDS, exitCode: code, ...result });
  expect(err, 'stderr of the child').toBe('');
  expect(code).toBe(0);
  // Only the transaction that lost its backend fails; the two healthy ones commit; no answer lands on the wrong statement.
  expect(result).toMatchObject({ hung: false, poolAnswers: true, committed: ROUNDS * 2, rejected: ROUNDS, reservedRejected: ROUNDS, wrongAnswers: 0 });
  // Every reserve and query during each outage failed (nothing listened), and all after it were served (not hung).
  expect(result['outageFailures']).toBe((result['outageRounds'] as number) * 12);
  // A reservation's dead connection is not handed on: no query after its release fails, and
  // nothing but the lost backends fails. A lost backend shows as the driver's CONNECTION_CLOSED,
  // or as ECONNRESET/EPIPE when the query's write reaches the socket before its close is read.
  expect(byCause(result['errors'] as Record<string, number>)).toEqual({ killed: ROUNDS, reserved: ROUNDS });
}, SOAK ? 300_000 : 90_000);

const CONNECTION_LOST = new Set(['CONNECTION_CLOSED', 'ECONNRESET', 'EPIPE']);

/** Counts failures by where they happened; any other cause keeps its own key, so it fails the test. */
function byCause(errors: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, n] of Object.entries(errors)) {
    const [where, code] = key.split(':', 2) as [string, string];
    const k = CONNECTION_LOST.has(code) ? where : key;
    out[k] = (out[k] ?? 0) + n;
  }
  return out;
}
