/**
 * Randomness a failing test can replay: every hand-rolled random choice in
 * the suites draws from a seeded generator, and the seed is printed when a
 * test fails. `TEST_SEED=<n> npx vitest run <file>` replays it. (fast-check
 * prints its own seed and path on failure.)
 */
import { beforeEach, onTestFailed } from 'vitest';

export interface Seeded {
  seed: number;
  /** Uniform in [0, 1). */
  random(): number;
  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number;
}

/** TEST_SEED when set, else one from the clock. */
function pickSeed(): number {
  const fromEnv = process.env['TEST_SEED'];
  if (fromEnv !== undefined && fromEnv !== '') {
    const n = Number(fromEnv);
    if (!Number.isSafeInteger(n)) throw new Error(`TEST_SEED: expected an integer, got ${JSON.stringify(fromEnv)}`);
    return n >>> 0;
  }
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function seededRandom(seed: number): Seeded {
  let a = seed >>> 0;
  const random = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { seed, random, int: (min, max) => min + Math.floor(random() * (max - min + 1)) };
}

const say = (label: string, seed: number) => () => {
  process.stderr.write(`[seed] ${label}: ${seed} (replay with TEST_SEED=${seed})\n`);
};

/** A generator for one test; call inside the test. Its seed is printed if the test fails. */
export function testSeed(label: string): Seeded {
  const s = seededRandom(pickSeed());
  onTestFailed(say(label, s.seed));
  return s;
}

/** A generator for every test of the file that imports this (call at module level). */
export function fileSeed(label: string): Seeded {
  const s = seededRandom(pickSeed());
  // Outside vitest (a bench imports the reliability ledger) there is no test to fail: say the seed once.
  if (!process.env['VITEST']) {
    say(label, s.seed)();
    return s;
  }
  beforeEach(({ onTestFailed: failed }) => {
    failed(say(label, s.seed));
  });
  return s;
}
