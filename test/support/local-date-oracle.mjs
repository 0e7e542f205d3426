// Test oracle: the real ECMAScript local time of a zone. Run as
// `TZ=<zone> node local-date-oracle.mjs`; reads one JSON request on stdin,
// answers one JSON reply on stdout. Everything here uses this process's
// local zone through Date's own getters and setters, which is how a browser
// in that zone computes a mission's next run (docs/contract.md §2):
//
//   daily:  the local hour and minute set on the reference instant; if that
//           is not later than the reference, one local day added to it;
//   weekly: the local hour set (minute 0); then days added to reach the
//           weekday, a whole week when it is that weekday but not later;
//   interval: plain elapsed minutes.
//
// Request: { transitionsFrom, transitionsTo, cases: [{ cadence, from }] } (instants in epoch ms).
// Reply:   { zone, transitions: [ms…], results: [ms…] }.

function nextRun(cadence, from) {
  if (cadence.kind === 'interval') return from + cadence.everyMinutes * 60_000;
  const t = new Date(from);
  if (cadence.kind === 'daily') {
    t.setHours(cadence.atHour, cadence.atMinute, 0, 0);
    if (t.getTime() <= from) t.setDate(t.getDate() + 1);
    return t.getTime();
  }
  if (cadence.kind === 'weekly') {
    t.setHours(cadence.atHour, 0, 0, 0);
    const ahead = (cadence.dayOfWeek - t.getDay() + 7) % 7;
    const days = ahead === 0 && t.getTime() <= from ? 7 : ahead;
    t.setDate(t.getDate() + days);
    return t.getTime();
  }
  throw new Error(`oracle: no rule for cadence ${JSON.stringify(cadence)}`);
}

/** Instants (to the minute) where this zone's UTC offset changes, found by an hourly walk then bisection. */
function transitions(fromMs, toMs) {
  const HOUR = 3_600_000;
  const offset = (t) => new Date(t).getTimezoneOffset();
  const found = [];
  for (let t = fromMs; t < toMs; t += HOUR) {
    if (offset(t) === offset(t + HOUR)) continue;
    let lo = t;
    let hi = t + HOUR;
    while (hi - lo > 60_000) {
      const mid = lo + Math.floor((hi - lo) / 120_000) * 60_000;
      if (offset(mid) === offset(lo)) lo = mid;
      else hi = mid;
    }
    found.push(hi);
  }
  return found;
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  input += chunk;
});
process.stdin.on('end', () => {
  const request = JSON.parse(input);
  const reply = {
    zone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    transitions: transitions(request.transitionsFrom, request.transitionsTo),
    results: request.cases.map((c) => nextRun(c.cadence, c.from)),
  };
  process.stdout.write(JSON.stringify(reply));
});
