import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isValidTimeZone, nextRunAt, resolveTimeZone } from '../../src/planner/cadence.js';

const BERLIN = 'Europe/Berlin';
const NY = 'America/New_York';

function next(cadence: unknown, after: string, tz: string): string | null {
  const r = nextRunAt(cadence, new Date(after), tz);
  if (!r.ok) throw new Error(`expected ok, got: ${r.reason}`);
  return r.next === null ? null : r.next.toISOString();
}

const daily = (atHour: number, atMinute: number) => ({ kind: 'daily', atHour, atMinute });
const weekly = (dayOfWeek: number, atHour: number) => ({ kind: 'weekly', dayOfWeek, atHour });
const cron = (expression: string) => ({ kind: 'cron', expression });

describe('nextRunAt: manual and interval', () => {
  it('manual has no automatic next run', () => {
    expect(next({ kind: 'manual' }, '2024-05-01T00:00:00Z', BERLIN)).toBeNull();
  });

  it.each([
    [1, '2024-05-01T10:00:00.000Z', '2024-05-01T10:01:00.000Z'],
    [90, '2024-05-01T23:00:00.000Z', '2024-05-02T00:30:00.000Z'],
    // Interval is elapsed time: a DST change does not stretch it.
    [60, '2024-03-31T00:30:00.000Z', '2024-03-31T01:30:00.000Z'],
    [1440, '2024-12-31T12:34:56.789Z', '2025-01-01T12:34:56.789Z'],
  ])('every %i min after %s → %s', (everyMinutes, after, expected) => {
    expect(next({ kind: 'interval', everyMinutes }, after, BERLIN)).toBe(expected);
  });
});

describe('nextRunAt: daily', () => {
  it.each([
    // [case, tz, atHour, atMinute, after, expected]
    ['later today (UTC)', 'UTC', 9, 0, '2024-05-01T08:00:00Z', '2024-05-01T09:00:00.000Z'],
    ['exactly at the time → tomorrow', 'UTC', 9, 0, '2024-05-01T09:00:00Z', '2024-05-02T09:00:00.000Z'],
    ['1 ms past the time → tomorrow', 'UTC', 9, 0, '2024-05-01T09:00:00.001Z', '2024-05-02T09:00:00.000Z'],
    ['1 ms before the time → today', 'UTC', 9, 0, '2024-05-01T08:59:59.999Z', '2024-05-01T09:00:00.000Z'],
    ['Berlin summer (UTC+2)', BERLIN, 9, 0, '2024-07-01T06:00:00Z', '2024-07-01T07:00:00.000Z'],
    ['Berlin winter (UTC+1), past → tomorrow', BERLIN, 9, 0, '2024-01-15T10:00:00Z', '2024-01-16T08:00:00.000Z'],
    ['Berlin local day ahead of UTC day', BERLIN, 0, 30, '2024-07-01T22:10:00Z', '2024-07-01T22:30:00.000Z'],
    ['NY local day behind UTC day', NY, 23, 30, '2024-06-01T03:00:00Z', '2024-06-01T03:30:00.000Z'],
    ['Kolkata half-hour offset', 'Asia/Kolkata', 9, 0, '2024-05-01T00:00:00Z', '2024-05-01T03:30:00.000Z'],
    ['Kathmandu 45-minute offset', 'Asia/Kathmandu', 9, 0, '2024-05-01T00:00:00Z', '2024-05-01T03:15:00.000Z'],
    // Rollover
    ['month end', 'UTC', 0, 0, '2024-01-31T12:00:00Z', '2024-02-01T00:00:00.000Z'],
    ['leap day', 'UTC', 0, 0, '2024-02-28T12:00:00Z', '2024-02-29T00:00:00.000Z'],
    ['Feb 28 → Mar 1 in a common year', 'UTC', 0, 0, '2023-02-28T12:00:00Z', '2023-03-01T00:00:00.000Z'],
    ['year end, Berlin', BERLIN, 8, 0, '2024-12-31T10:00:00Z', '2025-01-01T07:00:00.000Z'],
    ['year end, NY (already Jan 1 in UTC)', NY, 20, 0, '2024-12-31T23:00:00Z', '2025-01-01T01:00:00.000Z'],
    ['local New Year before UTC New Year', 'Pacific/Auckland', 9, 0, '2024-12-31T12:00:00Z', '2024-12-31T20:00:00.000Z'],
  ])('%s', (_name, tz, h, m, after, expected) => {
    expect(next(daily(h, m), after, tz)).toBe(expected);
  });
});

describe('nextRunAt: daily across DST (gap → moved forward by the gap, overlap → first occurrence)', () => {
  it.each([
    // Europe/Berlin, spring forward 2024-03-31 02:00 CET → 03:00 CEST (01:00Z)
    ['Berlin 09:00, CET day → CEST day', BERLIN, 9, 0, '2024-03-30T09:00:00Z', '2024-03-31T07:00:00.000Z'],
    ['Berlin 02:30 falls in the gap → 03:30 CEST', BERLIN, 2, 30, '2024-03-30T12:00:00Z', '2024-03-31T01:30:00.000Z'],
    ['Berlin 02:00 gap start → 03:00 CEST', BERLIN, 2, 0, '2024-03-30T12:00:00Z', '2024-03-31T01:00:00.000Z'],
    // From any reference on the gap day past the shifted 03:30 CEST, the webapp adds one local day to that
    // instant's local time (03:30), so the next run is 03:30 again, not 02:30: setDate works on the local
    // fields it is handed. The day after, 02:30 exists and the cadence is back at 02:30.
    ['Berlin 02:30 from the shifted 03:30 → next day 03:30, as the webapp', BERLIN, 2, 30, '2024-03-31T01:30:00Z', '2024-04-01T01:30:00.000Z'],
    ['Berlin 02:30 later on the gap day → next day 03:30, as the webapp', BERLIN, 2, 30, '2024-03-31T12:00:00Z', '2024-04-01T01:30:00.000Z'],
    ['Berlin 02:30 the day after the gap is normal', BERLIN, 2, 30, '2024-03-31T23:00:00Z', '2024-04-01T00:30:00.000Z'],
    ['Berlin 02:30 after the 03:30 run → back at 02:30', BERLIN, 2, 30, '2024-04-01T01:30:05Z', '2024-04-02T00:30:00.000Z'],
    ['Berlin 03:00 on the gap day is normal', BERLIN, 3, 0, '2024-03-30T12:00:00Z', '2024-03-31T01:00:00.000Z'],
    ['Berlin 01:59 just before the gap', BERLIN, 1, 59, '2024-03-30T12:00:00Z', '2024-03-31T00:59:00.000Z'],
    // Europe/Berlin, fall back 2024-10-27 03:00 CEST → 02:00 CET (01:00Z); 02:00–02:59 happens twice
    ['Berlin 09:00, CEST day → CET day', BERLIN, 9, 0, '2024-10-26T08:00:00Z', '2024-10-27T08:00:00.000Z'],
    ['Berlin 02:30 ambiguous → first (CEST)', BERLIN, 2, 30, '2024-10-26T12:00:00Z', '2024-10-27T00:30:00.000Z'],
    ['Berlin 02:30 ran at first → not again at second', BERLIN, 2, 30, '2024-10-27T00:30:00Z', '2024-10-28T01:30:00.000Z'],
    ['Berlin 02:30 between the two → tomorrow', BERLIN, 2, 30, '2024-10-27T00:45:00Z', '2024-10-28T01:30:00.000Z'],
    ['Berlin 03:00 on fall-back day (after the overlap)', BERLIN, 3, 0, '2024-10-26T12:00:00Z', '2024-10-27T02:00:00.000Z'],
    // America/New_York, spring forward 2024-03-10 02:00 EST → 03:00 EDT (07:00Z)
    ['NY 02:30 falls in the gap → 03:30 EDT', NY, 2, 30, '2024-03-09T12:00:00Z', '2024-03-10T07:30:00.000Z'],
    ['NY 09:00 EST day → EDT day', NY, 9, 0, '2024-03-09T15:00:00Z', '2024-03-10T13:00:00.000Z'],
    // America/New_York, fall back 2024-11-03 02:00 EDT → 01:00 EST (06:00Z); 01:00–01:59 twice
    ['NY 01:30 ambiguous → first (EDT)', NY, 1, 30, '2024-11-02T12:00:00Z', '2024-11-03T05:30:00.000Z'],
    ['NY 01:30 after the first → next day, not the second', NY, 1, 30, '2024-11-03T05:30:00Z', '2024-11-04T06:30:00.000Z'],
    ['NY 01:30 during the repeated hour → next day', NY, 1, 30, '2024-11-03T06:10:00Z', '2024-11-04T06:30:00.000Z'],
    ['NY 09:00 EDT day → EST day', NY, 9, 0, '2024-11-02T14:00:00Z', '2024-11-03T14:00:00.000Z'],
    // Australia/Lord_Howe moves by 30 minutes: 2024-10-06 02:00 → 02:30 (+10:30 → +11)
    ['Lord Howe 02:15 in a 30-minute gap → 02:45', 'Australia/Lord_Howe', 2, 15, '2024-10-05T00:00:00Z', '2024-10-05T15:45:00.000Z'],
  ])('%s', (_name, tz, h, m, after, expected) => {
    expect(next(daily(h, m), after, tz)).toBe(expected);
  });
});

describe('nextRunAt: weekly (0 = Sunday, at hh:00)', () => {
  it.each([
    ['same weekday, before the hour → today', BERLIN, 1, 9, '2024-05-06T06:00:00Z', '2024-05-06T07:00:00.000Z'],
    ['same weekday, after the hour → next week', BERLIN, 1, 9, '2024-05-06T08:00:00Z', '2024-05-13T07:00:00.000Z'],
    ['same weekday, exactly at the hour → next week', BERLIN, 1, 9, '2024-05-06T07:00:00Z', '2024-05-13T07:00:00.000Z'],
    ['Sunday is 0', 'UTC', 0, 10, '2024-05-04T12:00:00Z', '2024-05-05T10:00:00.000Z'],
    ['Saturday is 6', 'UTC', 6, 10, '2024-05-05T12:00:00Z', '2024-05-11T10:00:00.000Z'],
    ['across the year end', 'UTC', 3, 9, '2024-12-30T12:00:00Z', '2025-01-01T09:00:00.000Z'],
    ['across a month end', 'UTC', 2, 9, '2024-01-30T12:00:00Z', '2024-02-06T09:00:00.000Z'],
    ['weekday in local time, not UTC (NY Fri 22:00 = Sat UTC)', NY, 5, 22, '2024-05-03T20:00:00Z', '2024-05-04T02:00:00.000Z'],
    ['weekday in local time (Berlin Mon 00:00 = Sun UTC)', BERLIN, 1, 0, '2024-05-05T12:00:00Z', '2024-05-05T22:00:00.000Z'],
    ['Sunday 02:00 on Berlin spring-forward Sunday → 03:00 CEST', BERLIN, 0, 2, '2024-03-30T00:00:00Z', '2024-03-31T01:00:00.000Z'],
    ['Sunday 02:00 on Berlin fall-back Sunday → first 02:00', BERLIN, 0, 2, '2024-10-26T00:00:00Z', '2024-10-27T00:00:00.000Z'],
    ['Sunday 02:00 Berlin, after the first on fall-back day → a week later', BERLIN, 0, 2, '2024-10-27T00:30:00Z', '2024-11-03T01:00:00.000Z'],
    ['Sunday 01:00 NY fall-back → first 01:00 (EDT)', NY, 0, 1, '2024-11-01T00:00:00Z', '2024-11-03T05:00:00.000Z'],
    ['Sunday 02:00 NY spring-forward → 03:00 EDT', NY, 0, 2, '2024-03-08T00:00:00Z', '2024-03-10T07:00:00.000Z'],
  ])('%s', (_name, tz, dow, h, after, expected) => {
    expect(next(weekly(dow, h), after, tz)).toBe(expected);
  });

  it('ignores a minute field the contract does not have (webapp runs weekly at hh:00)', () => {
    expect(next({ ...weekly(1, 9), atMinute: 30 }, '2024-05-06T06:00:00Z', BERLIN)).toBe('2024-05-06T07:00:00.000Z');
  });
});

describe('nextRunAt: cron (5 fields, in the given time zone)', () => {
  it.each([
    ['weekdays 09:00 Berlin, Fri after → Mon', '0 9 * * 1-5', BERLIN, '2024-05-03T08:00:00Z', '2024-05-06T07:00:00.000Z'],
    ['strictly after: exactly at a match → next', '0 9 * * *', BERLIN, '2024-05-01T07:00:00Z', '2024-05-02T07:00:00.000Z'],
    ['strictly after: within the matching minute → next', '0 9 * * *', BERLIN, '2024-05-01T07:00:00.500Z', '2024-05-02T07:00:00.000Z'],
    ['same expression in NY', '30 8 * * *', NY, '2024-01-01T00:00:00Z', '2024-01-01T13:30:00.000Z'],
    ['same expression in UTC', '30 8 * * *', 'UTC', '2024-01-01T00:00:00Z', '2024-01-01T08:30:00.000Z'],
    ['every 15 minutes', '*/15 * * * *', 'UTC', '2024-01-01T00:07:00Z', '2024-01-01T00:15:00.000Z'],
    ['first of month, year rollover', '0 0 1 * *', BERLIN, '2024-12-15T00:00:00Z', '2024-12-31T23:00:00.000Z'],
    ['Berlin 09:00 across spring forward', '0 9 * * *', BERLIN, '2024-03-30T09:00:00Z', '2024-03-31T07:00:00.000Z'],
    ['Berlin 02:30 in the gap (same rule as daily)', '30 2 * * *', BERLIN, '2024-03-30T12:00:00Z', '2024-03-31T01:30:00.000Z'],
    ['Berlin 02:30 ambiguous → first', '30 2 * * *', BERLIN, '2024-10-26T12:00:00Z', '2024-10-27T00:30:00.000Z'],
    ['Berlin 02:30 ambiguous → runs once', '30 2 * * *', BERLIN, '2024-10-27T00:30:00Z', '2024-10-28T01:30:00.000Z'],
    ['extra whitespace is fine', '  0   9 * * *  ', 'UTC', '2024-05-01T00:00:00Z', '2024-05-01T09:00:00.000Z'],
  ])('%s', (_name, expression, tz, after, expected) => {
    expect(next(cron(expression), after, tz)).toBe(expected);
  });

  it('agrees with daily on the same wall-clock time across DST', () => {
    // Not from the spring-forward day itself: there the webapp's daily carries a shifted 03:30 into the next day, cron goes back to 02:30.
    const afters = ['2024-03-30T12:00:00Z', '2024-04-01T03:00:00Z', '2024-10-26T12:00:00Z', '2024-10-27T00:30:00Z'];
    for (const tz of [BERLIN, NY]) {
      for (const after of afters) {
        for (const [h, m] of [[2, 30], [1, 30], [9, 0]] as const) {
          expect(next(cron(`${m} ${h} * * *`), after, tz), `${tz} ${h}:${m} after ${after}`).toBe(next(daily(h, m), after, tz));
        }
      }
    }
  });
});

describe('nextRunAt: refusals', () => {
  const after = '2024-05-01T00:00:00Z';
  it.each([
    ['null', null, /invalid cadence/],
    ['a string', 'daily', /invalid cadence/],
    ['unknown kind', { kind: 'hourly' }, /invalid cadence/],
    ['interval 0', { kind: 'interval', everyMinutes: 0 }, /everyMinutes/],
    ['interval negative', { kind: 'interval', everyMinutes: -5 }, /everyMinutes/],
    ['interval as string', { kind: 'interval', everyMinutes: '5' }, /everyMinutes/],
    ['interval over a year', { kind: 'interval', everyMinutes: 10_000_000 }, /everyMinutes/],
    ['daily hour 24', daily(24, 0), /atHour/],
    ['daily minute 60', daily(9, 60), /atMinute/],
    ['daily fractional hour', daily(9.5, 0), /atHour/],
    ['daily missing minute', { kind: 'daily', atHour: 9 }, /atMinute/],
    ['weekly day 7', weekly(7, 9), /dayOfWeek/],
    ['weekly day -1', weekly(-1, 9), /dayOfWeek/],
    ['cron with 6 fields', cron('0 0 9 * * *'), /5 fields, got 6/],
    ['cron macro', cron('@daily'), /5 fields, got 1/],
    ['cron junk', cron('a b c d e'), /cron/],
    ['cron out of range', cron('61 * * * *'), /cron/],
    ['cron impossible date', cron('0 0 30 2 *'), /cron/],
    ['cron empty', cron(''), /invalid cadence/],
  ])('%s', (_name, cadence, reason) => {
    const r = nextRunAt(cadence, new Date(after), 'UTC');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it.each(['Mars/Olympus_Mons', '', 'Europe/Berlin '])('invalid time zone %j', (tz) => {
    const r = nextRunAt(daily(9, 0), new Date(after), tz);
    expect(r).toEqual({ ok: false, reason: `invalid time zone ${JSON.stringify(tz)}` });
  });

  it('invalid reference date', () => {
    expect(nextRunAt(daily(9, 0), new Date('nope'), 'UTC')).toEqual({ ok: false, reason: 'invalid reference date' });
  });

  it('tolerates extra keys a device may store on the cadence', () => {
    expect(next({ ...daily(9, 0), label: 'mornings' }, '2024-05-01T00:00:00Z', 'UTC')).toBe('2024-05-01T09:00:00.000Z');
  });
});

describe('nextRunAt: a Berlin daily 09:00 run after run', () => {
  it('stays 09:00 in Berlin across both DST changes of a year', () => {
    const berlinClock = new Intl.DateTimeFormat('en-GB', { timeZone: BERLIN, hourCycle: 'h23', hour: '2-digit', minute: '2-digit' });
    let at = '2024-01-01T08:00:00.000Z';
    for (let day = 0; day < 366; day++) {
      // Each run is planned a few seconds after it fell due, as the server does.
      at = next(daily(9, 0), new Date(Date.parse(at) + 7_000).toISOString(), BERLIN)!;
      expect(berlinClock.format(new Date(at)), at).toBe('09:00');
    }
    expect(at).toBe('2025-01-01T08:00:00.000Z');
  });
});

describe('resolveTimeZone', () => {
  it.each([
    ['the user zone wins over the mission field and the default', { timezone: 'Asia/Tokyo' }, 'Europe/Berlin', 'Europe/Berlin'],
    ['the user zone, canonicalised', {}, 'europe/BERLIN', 'Europe/Berlin'],
    ['junk from a device is ignored', { timezone: 'Asia/Tokyo' }, 'Mars/Base', 'Asia/Tokyo'],
    ['no user zone: the mission field', { timezone: 'Asia/Tokyo' }, null, 'Asia/Tokyo'],
    ['nothing: the default', {}, undefined, 'Europe/Vienna'],
  ])('%s', (_name, mission, userTz, expected) => {
    expect(resolveTimeZone(mission, 'Europe/Vienna', userTz)).toBe(expected);
  });

  it.each([
    [{ timezone: 'Europe/Berlin' }, 'Europe/Berlin'],
    [{ timezone: 'America/New_York' }, 'America/New_York'],
    [{ timezone: 'UTC' }, 'UTC'],
    [{ timezone: 'Not/AZone' }, 'Europe/Vienna'],
    [{ timezone: '' }, 'Europe/Vienna'],
    [{ timezone: 42 as unknown as string }, 'Europe/Vienna'],
    [{}, 'Europe/Vienna'],
  ])('%j → %s', (mission, expected) => {
    expect(resolveTimeZone(mission, 'Europe/Vienna')).toBe(expected);
  });

  it('isValidTimeZone', () => {
    expect(isValidTimeZone('Asia/Tokyo')).toBe(true);
    expect(isValidTimeZone('Asia/Atlantis')).toBe(false);
  });
});

/** Brute-force oracle: walk minute by minute until the wall clock reads hh:mm. */
function bruteForceDaily(after: Date, tz: string, hour: number, minute: number): string {
  const fmt = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', hour: 'numeric', minute: 'numeric' });
  let t = Math.floor(after.getTime() / 60_000) * 60_000 + 60_000;
  for (let i = 0; i < 3 * 1440; i++, t += 60_000) {
    const parts = Object.fromEntries(fmt.formatToParts(t).map((p) => [p.type, p.value]));
    if (Number(parts['hour']) === hour && Number(parts['minute']) === minute) return new Date(t).toISOString();
  }
  throw new Error('not found');
}

describe('nextRunAt: daily agrees with a brute-force oracle', () => {
  it('for times that exist exactly once (no DST hour)', () => {
    const zones = [BERLIN, NY, 'UTC', 'Asia/Kolkata', 'Asia/Tokyo', 'Pacific/Auckland'];
    fc.assert(
      fc.property(
        fc.constantFrom(...zones),
        fc.integer({ min: 4, max: 23 }),
        fc.integer({ min: 0, max: 59 }),
        fc.date({ min: new Date('2023-01-01T00:00:00Z'), max: new Date('2026-12-31T00:00:00Z'), noInvalidDate: true }),
        (tz, hour, minute, after) => {
          // Auckland changes at 02:00/03:00 local, so hours >= 4 are safe there too.
          expect(next(daily(hour, minute), after.toISOString(), tz)).toBe(bruteForceDaily(after, tz, hour, minute));
        },
      ),
      { numRuns: 150 },
    );
  });
});
