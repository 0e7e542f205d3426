/**
 * Run as a child process by driver.test.ts (an unpatched postgres.js kills
 * the process, so it cannot run inside the test worker): transactions whose
 * backend is terminated mid-way, three at a time, while the pool keeps
 * serving; then reserved connections whose backend is terminated, released
 * by their holder, while the pool keeps serving; then reserves and queries
 * through an outage, and the pool serving both after it. Prints one JSON line and exits 0 when every transaction settled
 * (committed or rejected) and the pool still answers; exits 3 on a hang.
 */
import { connect, createServer } from 'node:net';
import postgres from 'postgres';

const [url, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg ?? 30);
const sql = postgres(url, { max: 3, onnotice: () => {}, backoff: () => 0.05 });
const killer = postgres(url, { max: 1, onnotice: () => {} });
let committed = 0;
let rejected = 0;
/** Answers that belonged to another statement: the worst failure, silent corruption. */
let wrongAnswers = 0;
const errors = {};
let round = 0;
const watchdog = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ hung: true, round, committed, rejected, wrongAnswers, errors })}\n`);
  process.exit(3);
}, 60_000);

for (; round < rounds; round++) {
  await Promise.all(
    [0, 1, 2].map(async (j) => {
      try {
        await sql.begin(async (tx) => {
          const [{ pid }] = await tx`select pg_backend_pid() as pid`;
          // One transaction of three loses its backend between two statements.
          if (j === 0) await killer`select pg_terminate_backend(${pid})`;
          await new Promise((r) => setTimeout(r, j * 5));
          const [{ a }] = await tx`select ${j * 1000 + 1}::int as a`;
          const [{ n }] = await tx`select ${round * 10 + j}::int as n`;
          if (a !== j * 1000 + 1 || n !== round * 10 + j) wrongAnswers++;
        });
        committed++;
      } catch (e) {
        rejected++;
        const key = `${j === 0 ? 'killed' : 'healthy'}:${e?.code ?? e?.message}`;
        errors[key] = (errors[key] ?? 0) + 1;
      }
      const [{ p }] = await sql`select ${j + 7}::int as p`.catch(() => [{ p: j + 7 }]);
      if (p !== j + 7) wrongAnswers++;
    }),
  );
}
// A reserved connection (src/db/pipelined-tx.ts) whose backend goes: its holder's next query
// fails, and once released the pool must not hand the dead connection to anyone else.
let reservedRejected = 0;
for (let i = 0; i < rounds; i++, round++) {
  const r = await sql.reserve();
  const [{ pid }] = await r`select pg_backend_pid() as pid`;
  await r`begin`;
  await killer`select pg_terminate_backend(${pid})`;
  await new Promise((resolve) => setTimeout(resolve, 20));
  try {
    await r`select 1`;
  } catch (e) {
    reservedRejected++;
    const key = `reserved:${e?.code ?? e?.message}`;
    errors[key] = (errors[key] ?? 0) + 1;
  }
  await r`rollback`.catch(() => undefined);
  r.release();
  await Promise.all(
    [0, 1, 2].map(async (j) => {
      try {
        const [{ p }] = await sql`select ${i * 10 + j}::int as p`;
        if (p !== i * 10 + j) wrongAnswers++;
      } catch (e) {
        const key = `afterRelease:${e?.code ?? e?.message}`;
        errors[key] = (errors[key] ?? 0) + 1;
      }
    }),
  );
}
// An outage: reserves and queries fail while nothing listens (a proxy port not yet open), then
// the database is reachable again. Every later reserve and query must be served: none lost in
// the pool's queue, no connection handed to a reserve that already failed.
const outageRounds = Math.max(3, Math.round(rounds / 10));
let outageFailures = 0;
for (let i = 0; i < outageRounds; i++, round++) {
  const target = new URL(url);
  const port = await new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = probe.address();
      probe.close(() => resolve(p));
    });
  });
  const via = new URL(url);
  via.hostname = '127.0.0.1';
  via.port = String(port);
  const flaky = postgres(via.toString(), { max: 2, onnotice: () => {}, backoff: () => 0.02, connect_timeout: 2 });
  await Promise.all(
    Array.from({ length: 6 }, () => [
      flaky.reserve().then((r) => r.release(), () => outageFailures++),
      flaky`select 1`.then(() => undefined, () => outageFailures++),
    ]).flat(),
  );
  const proxy = createServer((client) => {
    const server = connect(Number(target.port), target.hostname);
    client.pipe(server).pipe(client);
    client.on('error', () => server.destroy());
    server.on('error', () => client.destroy());
  }).listen(port, '127.0.0.1');
  await new Promise((resolve) => proxy.once('listening', resolve));
  for (let k = 0; k < 5; k++) {
    await Promise.all([
      ...[0, 1, 2, 3, 4].map(async (j) => {
        const [{ p }] = await flaky`select ${k * 10 + j}::int as p`;
        if (p !== k * 10 + j) wrongAnswers++;
      }),
      ...[0, 1].map(async (j) => {
        const r = await flaky.reserve();
        const [{ p }] = await r`select ${k * 100 + j}::int as p`;
        if (p !== k * 100 + j) wrongAnswers++;
        r.release();
      }),
    ]);
  }
  await flaky.end({ timeout: 1 });
  await new Promise((resolve) => proxy.close(resolve));
}
const [{ ok }] = await sql`select true as ok`;
clearTimeout(watchdog);
process.stdout.write(`${JSON.stringify({ hung: false, rounds, committed, rejected, reservedRejected, outageRounds, outageFailures, wrongAnswers, errors, poolAnswers: ok })}\n`);
await sql.end({ timeout: 1 });
await killer.end({ timeout: 1 });
