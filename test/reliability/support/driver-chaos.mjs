/**
 * Run as a child process by driver.test.ts (an unpatched postgres.js kills
 * the process, so it cannot run inside the test worker): transactions whose
 * backend is terminated mid-way, three at a time, while the pool keeps
 * serving. Prints one JSON line and exits 0 when every transaction settled
 * (committed or rejected) and the pool still answers; exits 3 on a hang.
 */
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
const [{ ok }] = await sql`select true as ok`;
clearTimeout(watchdog);
process.stdout.write(`${JSON.stringify({ hung: false, rounds, committed, rejected, wrongAnswers, errors, poolAnswers: ok })}\n`);
await sql.end({ timeout: 1 });
await killer.end({ timeout: 1 });
