/**
 * The server's next run for interval, daily and weekly cadences equals what
 * a browser whose local zone is the user's zone computes (docs/contract.md
 * §2), held as a property against the real thing: a child `node` started
 * with TZ=<zone> running Date's own setters (test/support/local-date-oracle.mjs).
 * Cases cluster around every UTC-offset change of 2010–2032 in each zone
 * (spring forward, fall back, 30-minute and 2-hour shifts, a skipped
 * calendar day, midnight transitions), plus chains of consecutive runs and
 * random instants.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { nextRunAt } from '../../src/planner/cadence.js';
import { canonicalTimeZone } from '../../src/lib/time-zone.js';
import { testSeed, type Seeded } from '../support/seed.js';

const ORACLE = fileURLToPath(new URL('../support/local-date-oracle.mjs', import.meta.url));
const FROM = Date.UTC(2010, 0, 1);
const TO = Date.UTC(2032, 0, 1);
const MINUTE = 60_000;
const DAY = 86_400_000;

const ZONES = [
  'Europe/Berlin',
  'America/New_York',
  'Australia/Lord_Howe', // 30-minute DST
  'Asia/Kathmandu', // +05:45, one change (1986) outside the window: plain offsets
  'America/Santiago', // DST changes at local midnight
  'Pacific/Apia', // skipped 2011-12-30 entirely; DST until 2021
  'Antarctica/Troll', // a 2-hour DST
  'America/Havana', // changes at local midnight
  'Pacific/Chatham', // +12:45 / +13:45
  'Africa/Casablanca', // offset drops during Ramadan
];

type Cadence = { kind: 'interval'; everyMinutes: number } | { kind: 'daily'; atHour: number; atMinute: number } | { kind: 'weekly'; dayOfWeek: number; atHour: number };
interface Case {
  cadence: Cadence;
  from: number;
}
interface OracleReply {
  zone: string;
  transitions: number[];
  results: number[];
}

function askOracle(zone: string, cases: Case[]): OracleReply {
  const r = spawnSync(process.execPath, [ORACLE], {
    input: JSON.stringify({ transitionsFrom: FROM, transitionsTo: TO, cases }),
    env: { ...process.env, TZ: zone },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`oracle for ${zone} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as OracleReply;
}

/** Local hour and minute of an instant in `zone`, read with Intl (independent of the code under test). */
function localHourMinute(zone: string, instant: number): { hour: number; minute: number; weekday: number } {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', hour: 'numeric', minute: 'numeric', weekday: 'short' }).formatToParts(instant);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return { hour: Number(get('hour')), minute: Number(get('minute')), weekday: ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'].indexOf(get('weekday')) };
}

function pick<T>(rnd: Seeded, items: readonly T[]): T {
  return items[rnd.int(0, items.length - 1)]!;
}

/** A reference instant near `at`: often exactly on it or on a whole minute, sometimes with milliseconds. */
function near(rnd: Seeded, at: number, spanMs: number): number {
  const shift = rnd.int(-spanMs, spanMs);
  switch (rnd.int(0, 3)) {
    case 0:
      return at + pick(rnd, [-1, 0, 1, -MINUTE, MINUTE]);
    case 1:
      return Math.round((at + shift) / MINUTE) * MINUTE;
    default:
      return at + shift;
  }
}

/** A cadence whose wall-clock time lies at, inside or next to the local times a transition skips or repeats. */
function cadenceNear(rnd: Seeded, zone: string, transition: number): Cadence {
  const before = localHourMinute(zone, transition - 1);
  const after = localHourMinute(zone, transition);
  const anchor = pick(rnd, [before, after, localHourMinute(zone, transition - 30 * MINUTE), localHourMinute(zone, transition + 30 * MINUTE)]);
  const atMinute = pick(rnd, [0, anchor.minute, 15, 30, 45, rnd.int(0, 59)]);
  switch (rnd.int(0, 4)) {
    case 0:
      return { kind: 'weekly', dayOfWeek: pick(rnd, [before.weekday, after.weekday, rnd.int(0, 6)]), atHour: anchor.hour };
    case 1:
      return { kind: 'interval', everyMinutes: pick(rnd, [1, 30, 60, 1440, rnd.int(1, 366 * 1440)]) };
    default:
      return { kind: 'daily', atHour: anchor.hour, atMinute };
  }
}

function randomCadence(rnd: Seeded): Cadence {
  switch (rnd.int(0, 2)) {
    case 0:
      return { kind: 'interval', everyMinutes: rnd.int(1, 366 * 1440) };
    case 1:
      return { kind: 'weekly', dayOfWeek: rnd.int(0, 6), atHour: rnd.int(0, 23) };
    default:
      return { kind: 'daily', atHour: rnd.int(0, 23), atMinute: rnd.int(0, 59) };
  }
}

function ours(zone: string, c: Case): number {
  const r = nextRunAt(c.cadence, new Date(c.from), zone);
  if (!r.ok || r.next === null) throw new Error(`expected a next run for ${JSON.stringify(c)} in ${zone}, got ${JSON.stringify(r)}`);
  return r.next.getTime();
}

function casesFor(rnd: Seeded, zone: string, transitions: number[]): Case[] {
  const cases: Case[] = [];
  for (let i = 0; i < 400 && transitions.length > 0; i++) {
    const t = pick(rnd, transitions);
    cases.push({ cadence: cadenceNear(rnd, zone, t), from: near(rnd, t, 3 * DAY) });
  }
  // Consecutive runs, each from the previous one's result, as the server advances a mission after each plan.
  for (let chain = 0; chain < 30; chain++) {
    const start = transitions.length > 0 ? pick(rnd, transitions) - rnd.int(0, 8 * DAY) : rnd.int(FROM, TO);
    const cadence = transitions.length > 0 ? cadenceNear(rnd, zone, start) : randomCadence(rnd);
    let from = near(rnd, start, DAY);
    for (let step = 0; step < 6; step++) {
      cases.push({ cadence, from });
      from = ours(zone, { cadence, from }) + pick(rnd, [0, 0, 1, 1500, 40_000]);
    }
  }
  for (let i = 0; i < 100; i++) cases.push({ cadence: randomCadence(rnd), from: rnd.int(FROM, TO) });
  return cases;
}

describe('nextRunAt for interval, daily and weekly equals Date in a process whose local zone is the user zone', () => {
  it.each(ZONES)('%s', (zone) => {
    const rnd = testSeed(`cadence oracle ${zone}`);
    const { zone: oracleZone, transitions } = askOracle(zone, []);
    // The child really ran in that zone (a TZ Node did not know would be UTC); ICU may name it by an alias.
    expect(oracleZone).toBe(canonicalTimeZone(zone));
    // The cases are built around the zone's offset changes: every zone here has several in the window but Kathmandu.
    if (zone === 'Asia/Kathmandu') expect(transitions).toEqual([]);
    else expect(transitions.length).toBeGreaterThan(5);
    const cases = casesFor(rnd, zone, transitions);
    const { results } = askOracle(zone, cases);
    const mismatches = cases
      .map((c, i) => ({ c, theirs: results[i]!, mine: ours(zone, c) }))
      .filter((m) => m.mine !== m.theirs)
      .map((m) => `${JSON.stringify(m.c.cadence)} from ${new Date(m.c.from).toISOString()}: ours ${new Date(m.mine).toISOString()}, Date ${new Date(m.theirs).toISOString()}`);
    expect(mismatches.slice(0, 5), `${mismatches.length} of ${cases.length} cases differ`).toEqual([]);
    expect(cases.length).toBeGreaterThan(250);
  });
});
