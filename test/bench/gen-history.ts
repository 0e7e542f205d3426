/**
 * A deterministic, realistic sync_changes history for the projection bench,
 * generated inside Postgres (INSERT … SELECT over generate_series, seeded with
 * hashint8extended) so a million rows take seconds, not minutes.
 *
 * Shape, for `rows` = N (default 1,000,000):
 * - every 5th row (noiseEvery) is noise: another app's row (todo/notes/calendar/habits/
 *   journal) of the same users — 20 % of the log;
 * - the rest are aiMissions rows of `users` × `missionsPerUser` missions
 *   (2,000 × 5), spread evenly (≈ 80 rows per mission): the first row of a
 *   mission is an insert with the whole record (docs/contract.md §2), later rows
 *   are updates (runner iterations + nextRunAt, reschedules, state changes,
 *   edits, cadence changes) and soft deletes (op delete with `deletedAt`), about
 *   1 % of the log is hard deletes and the row after one re-creates the mission;
 * - metadata as mana-sync stores it: an update's `field_meta` maps each field
 *   to an ISO string, inserts and deletes carry `{}`; a tenth of the updates
 *   carry `field_timestamps` instead (written before the column was renamed,
 *   so devices ignore them); a field's instant is a little before the row's
 *   created_at, sometimes days before (an offline device), so LWW really
 *   decides;
 * - spaces as the webapp stamps them: the first 15 % of the span no space_id,
 *   then 10 % the `_personal:<user>` placeholder, then the user's personal
 *   space; one mission in 40 lives in a shared space from its creation, and a
 *   fifth of its updates are another member's;
 * - created_at spans 90 days ending 2025-04-01 with ±20 s of jitter and a few
 *   rows 10 minutes early, so heap order is not created_at order.
 */
import type { Sql } from '../../src/db/pool.js';

export interface HistoryOptions {
  rows?: number;
  users?: number;
  missionsPerUser?: number;
  seed?: number;
  /** Every how-manieth row is another app's (default 5: a fifth of the log). */
  noiseEvery?: number;
  /** Missions' nextRunAt this many years after their rows (default 0: due long ago), so none is due. */
  runsAheadYears?: number;
  /** Rows per INSERT statement (each statement is one transaction). */
  chunk?: number;
  progress?: (line: string) => void;
}

export const HISTORY_DEFAULTS = { rows: 1_000_000, users: 2_000, missionsPerUser: 5, seed: 20260401 } as const;
/** Bumped whenever the generated rows change, so a kept bench database is regenerated. */
export const HISTORY_VERSION = 3;

const BASE = '2025-01-01T00:00:00Z';
const SPAN_SECONDS = 90 * 24 * 3600;

/** Uniform [0,1) from a key and a salt, deterministic for a seed. */
const rnd = (key: string, salt: number) => `((hashint8extended((${key}) * 64 + ${salt}, $seed) & 2147483647)::float8 / 2147483648)`;
/** Integer in [0,n) from a key and a salt. */
const pick = (key: string, salt: number, n: number) => `(floor(${rnd(key, salt)} * ${n})::int)`;
const iso = (ts: string) => `to_char((${ts}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

const TITLES = [
  'Weekly review of open tasks',
  'Morning planning',
  'Summarise new notes',
  'Keep my habits on track',
  'Prepare the team sync',
  'Inbox zero helper',
  'Reading list curator',
  'Plan meals for the week',
  'Journal prompts',
  'Track fitness goals',
];
const OBJECTIVES = [
  'Turn the notes I wrote this week into three concrete tasks.',
  'Suggest one habit to log today based on my streaks.',
  'Draft the agenda for Monday from open tasks and calendar.',
  'Find articles worth saving from my reading inputs.',
  'Propose a journal entry prompt from yesterday\'s events.',
];
const TOOLS = ['create_task', 'complete_task', 'create_event', 'create_note', 'append_to_note', 'create_goal', 'log_habit', 'create_journal_entry', 'save_news_article'];
const NOISE_APPS = [
  ['todo', 'tasks'],
  ['notes', 'notes'],
  ['calendar', 'events'],
  ['habits', 'habitLogs'],
  ['journal', 'entries'],
] as const;

const arr = (xs: readonly string[]) => `ARRAY[${xs.map((x) => `'${x.replace(/'/g, "''")}'`).join(',')}]::text[]`;

/**
 * One INSERT … SELECT for rows [$1, $2); $3 = total rows N, $4 = missions;
 * the seed is inlined as $seed.
 */
/** A MissionIteration as JSON text for iteration number `n` (an SQL expression) of mission mk.m. */
function iterationJson(n: string): string {
  const step = (st: number) =>
    `format('{"id":"%s-${st}","summary":"Step ${st} of run %s","intent":{"kind":"toolCall","toolName":"%s","params":{"title":"Follow up on item %s"}},"status":"%s"}', ` +
    `md5('it:' || mk.m || ':' || (${n}))::uuid, ${n}, (${arr(TOOLS)})[1 + ((mk.m + (${n}) + ${st}) % ${TOOLS.length})], (mk.m * 7 + (${n})) % 1000, ` +
    `(ARRAY['planned','staged','approved','rejected'])[1 + (((${n}) + ${st}) % 4)])`;
  return (
    `format('{"id":"%s","startedAt":"%s","finishedAt":"%s","plan":[%s],"summary":"Run %s: proposed follow-ups from recent notes","overallStatus":"%s","source":"%s"}', ` +
    `md5('it:' || mk.m || ':' || (${n}))::uuid, v.at_iso, v.at_iso, ` +
    `${step(0)} || CASE WHEN (mk.m + (${n})) % 4 = 0 THEN ',' || ${step(1)} ELSE '' END, ${n}, ` +
    `(ARRAY['awaiting-review','approved','rejected','awaiting-review'])[1 + ((${n}) % 4)], CASE WHEN (${n}) % 3 = 0 THEN 'server' ELSE 'browser' END)`
  );
}

const nextRun = iso('v.created_at + $ahead make_interval(hours => 1 + ' + pick('g.i', 14, 48) + ')');

/** Each kind of row: its share among mission updates (cumulative bound), its data and its field list (for the metadata). */
const KINDS: { kind: string; data: string; keys: string[] }[] = [
  {
    kind: 'noise',
    data: `jsonb_build_object('title', 'Item ' || (g.i % 60000), 'done', ${rnd('g.i', 15)} < 0.5, 'updatedAt', v.at_iso)`,
    keys: ['title', 'done', 'updatedAt'],
  },
  {
    kind: 'insert',
    data: `jsonb_build_object(
      'id', v.mid,
      'title', (${arr(TITLES)})[1 + ${pick('mk.m', 16, TITLES.length)}],
      'conceptMarkdown', CASE WHEN ${rnd('mk.m', 17)} < 0.3
        THEN 'enc:1:' || encode(sha256(('c' || mk.m)::bytea), 'base64') || encode(sha256(('d' || mk.m)::bytea), 'base64')
        ELSE '## Rules' || chr(10) || '- Only propose tasks from my notes' || chr(10) || '- Never more than three steps' || chr(10) || '- Prefer mornings' END,
      'objective', (${arr(OBJECTIVES)})[1 + ${pick('mk.m', 18, OBJECTIVES.length)}],
      'inputs', jsonb_build_array(
        jsonb_build_object('module', 'notes', 'table', 'notes', 'id', md5('in1:' || mk.m)::uuid::text),
        jsonb_build_object('module', 'todo', 'table', 'tasks', 'id', md5('in2:' || mk.m)::uuid::text)),
      'cadence', CASE ${pick('mk.m', 19, 4)}
        WHEN 0 THEN jsonb_build_object('kind', 'interval', 'everyMinutes', 60 * (1 + ${pick('mk.m', 20, 24)}))
        WHEN 1 THEN jsonb_build_object('kind', 'daily', 'atHour', ${pick('mk.m', 20, 24)}, 'atMinute', 0)
        WHEN 2 THEN jsonb_build_object('kind', 'weekly', 'dayOfWeek', ${pick('mk.m', 20, 7)}, 'atHour', 9)
        ELSE jsonb_build_object('kind', 'manual') END,
      'state', 'active',
      'nextRunAt', ${nextRun},
      'iterations', '[]'::jsonb,
      'createdAt', v.at_iso,
      'updatedAt', v.at_iso,
      'userId', v.user_id,
      'authorId', v.user_id,
      'spaceId', coalesce(v.space_id, '_personal:' || v.user_id))`,
    keys: ['id', 'title', 'conceptMarkdown', 'objective', 'inputs', 'cadence', 'state', 'nextRunAt', 'iterations', 'createdAt', 'updatedAt', 'userId', 'authorId', 'spaceId'],
  },
  {
    kind: 'runner',
    data: `jsonb_build_object(
      'iterations', ('[' || ${iterationJson('mk.k')} || ']')::jsonb,
      'nextRunAt', ${nextRun},
      'updatedAt', v.at_iso)`,
    keys: ['iterations', 'nextRunAt', 'updatedAt'],
  },
  { kind: 'reschedule', data: `jsonb_build_object('nextRunAt', ${nextRun}, 'updatedAt', v.at_iso)`, keys: ['nextRunAt', 'updatedAt'] },
  {
    kind: 'state',
    data: `jsonb_build_object('state', (ARRAY['active','active','active','paused','done','archived'])[1 + ${pick('g.i', 21, 6)}], 'updatedAt', v.at_iso)`,
    keys: ['state', 'updatedAt'],
  },
  {
    kind: 'title',
    data: `jsonb_build_object('title', (${arr(TITLES)})[1 + ${pick('g.i', 23, TITLES.length)}] || ' (v' || mk.k || ')', 'updatedAt', v.at_iso)`,
    keys: ['title', 'updatedAt'],
  },
  {
    kind: 'objective',
    data: `jsonb_build_object('objective', (${arr(OBJECTIVES)})[1 + ${pick('g.i', 23, OBJECTIVES.length)}], 'updatedAt', v.at_iso)`,
    keys: ['objective', 'updatedAt'],
  },
  {
    kind: 'concept',
    data: `jsonb_build_object('conceptMarkdown', 'enc:1:' || encode(sha256(('e' || g.i)::bytea), 'base64'), 'updatedAt', v.at_iso)`,
    keys: ['conceptMarkdown', 'updatedAt'],
  },
  {
    kind: 'cadence',
    data: `jsonb_build_object('cadence', jsonb_build_object('kind', 'interval', 'everyMinutes', 30 * (1 + ${pick('g.i', 24, 48)})), 'nextRunAt', ${nextRun}, 'updatedAt', v.at_iso)`,
    keys: ['cadence', 'nextRunAt', 'updatedAt'],
  },
  {
    kind: 'inputs',
    data: `jsonb_build_object('inputs', jsonb_build_array(jsonb_build_object('module', 'notes', 'table', 'notes', 'id', md5('in3:' || g.i)::uuid::text)), 'updatedAt', v.at_iso)`,
    keys: ['inputs', 'updatedAt'],
  },
  // A soft delete as mana-sync stores the webapp's: op delete, data.deletedAt (stamped by the op, not metadata).
  { kind: 'softdelete', data: `jsonb_build_object('deletedAt', v.at_iso)`, keys: [] },
];

/** Cumulative shares of the update kinds among mission updates. */
const UPDATE_MIX: [kind: string, upTo: number][] = [
  ['runner', 0.3],
  ['reschedule', 0.7],
  ['state', 0.82],
  ['title', 0.85],
  ['objective', 0.88],
  ['concept', 0.91],
  ['cadence', 0.96],
  ['inputs', 0.997],
  ['softdelete', 1],
];

const byKind = (f: (k: (typeof KINDS)[number]) => string) => `CASE v.kind ${KINDS.map((k) => `WHEN '${k.kind}' THEN ${f(k)}`).join('\n      ')} END`;
/** The metadata object of a row: every field of its data with the same entry. */
const metaOf = (entry: string) => byKind((k) => `jsonb_build_object(${k.keys.map((key) => `'${key}', ${entry}`).join(', ')})`);

/**
 * One INSERT … SELECT for rows [$1, $2); $3 = total rows N, $4 = missions,
 * $5 = missions per user; the seed is inlined as $seed. Each LATERAL ends in
 * OFFSET 0 so Postgres computes it once per row instead of inlining its
 * expressions into every reference.
 */
function insertSql(): string {
  return `
INSERT INTO sync_changes
  (id, app_id, table_name, record_id, user_id, op, data, field_timestamps, field_meta, client_id, created_at, schema_version, actor, origin, space_id)
SELECT
  md5($seed::text || ':' || g.i)::uuid,
  v.app_id, v.table_name, v.record_id, v.user_id, CASE WHEN v.kind = 'softdelete' THEN 'delete' ELSE v.op END,
  CASE WHEN v.kind = 'delete' THEN '{}'::jsonb ELSE ${byKind((k) => k.data)} END,
  CASE WHEN v.op = 'update' AND v.kind <> 'softdelete' AND v.legacy THEN ${metaOf('to_jsonb(v.at_iso)')} ELSE '{}'::jsonb END,
  CASE WHEN v.op = 'update' AND v.kind <> 'softdelete' AND NOT v.legacy THEN ${metaOf('to_jsonb(v.at_iso)')} ELSE '{}'::jsonb END,
  v.client_id, v.created_at, 1, v.actor, v.origin, v.space_id
FROM generate_series($1::bigint, $2::bigint - 1) AS g(i)
CROSS JOIN LATERAL (
  -- every 5th row is noise; the others are mission row j: mission m (a
  -- permutation of j mod M), its k-th row
  SELECT g.i % $every = $every - 1 AS noise, (((g.i / $every) * ($every - 1) + (g.i % $every)) % $4 * 7919) % $4 AS m,
         ((g.i / $every) * ($every - 1) + (g.i % $every)) / $4 AS k
  OFFSET 0
) mk
CROSS JOIN LATERAL (
  SELECT
    CASE
      WHEN mk.noise THEN CASE WHEN ${rnd('g.i', 5)} < 0.01 THEN 'delete' WHEN ${rnd('g.i', 5)} < 0.3 THEN 'insert' ELSE 'update' END
      WHEN mk.k = 0 THEN 'insert'
      WHEN ${rnd('mk.m * 1000 + mk.k', 1)} < 0.0125 THEN 'delete'
      WHEN mk.k > 1 AND ${rnd('mk.m * 1000 + mk.k - 1', 1)} < 0.0125 THEN 'insert'
      ELSE 'update'
    END AS op,
    timestamptz '${BASE}' + make_interval(secs => g.i * ${SPAN_SECONDS}::float8 / $3
      + (${rnd('g.i', 2)} - 0.5) * 40
      - CASE WHEN ${rnd('g.i', 3)} < 0.001 THEN 600 ELSE 0 END) AS created_at,
    substr(md5('user:' || CASE WHEN mk.noise THEN floor(${rnd('g.i', 13)} * ($4 / $5))::bigint
      -- A shared mission's updates are partly another member's (the owner of a mission five further on).
      WHEN mk.m % 40 = 0 AND mk.k % 5 = 2 THEN ((mk.m + 5) % $4) / $5
      ELSE mk.m / $5 END), 1, 24) AS user_id,
    md5('mission:' || mk.m)::uuid::text AS mid
  OFFSET 0
) t
CROSS JOIN LATERAL (
  SELECT
    t.op, t.created_at, t.user_id, t.mid,
    CASE
      WHEN mk.noise AND t.op = 'delete' THEN 'delete'
      WHEN mk.noise THEN 'noise'
      WHEN t.op <> 'update' THEN t.op
      ${UPDATE_MIX.map(([kind, upTo]) => `WHEN ${rnd('g.i', 6)} < ${upTo} THEN '${kind}'`).join('\n      ')}
    END AS kind,
    CASE WHEN mk.noise THEN (${arr(NOISE_APPS.map((a) => a[0]))})[1 + ${pick('g.i', 4, NOISE_APPS.length)}] ELSE 'ai' END AS app_id,
    CASE WHEN mk.noise THEN (${arr(NOISE_APPS.map((a) => a[1]))})[1 + ${pick('g.i', 4, NOISE_APPS.length)}] ELSE 'aiMissions' END AS table_name,
    CASE WHEN mk.noise THEN md5('noise:' || (g.i % 60000))::uuid::text ELSE t.mid END AS record_id,
    ${rnd('g.i', 7)} < 0.1 AS legacy,
    CASE WHEN mk.noise THEN NULL
         WHEN mk.m % 40 = 0 THEN 'team-' || (mk.m / 40 % 50)
         WHEN g.i < $3 * 0.15 THEN NULL
         WHEN g.i < $3 * 0.25 THEN '_personal:' || t.user_id
         ELSE 'space-' || substr(md5('space:' || t.user_id), 1, 20) END AS space_id,
    -- the field instant: a little before created_at, sometimes days (an offline device)
    ${iso(`t.created_at - make_interval(secs => CASE WHEN ${rnd('g.i', 9)} < 0.02 THEN ${rnd('g.i', 10)} * 259200 ELSE ${rnd('g.i', 10)} * 300 END)`)} AS at_iso,
    CASE WHEN NOT mk.noise AND t.op = 'update' AND ${rnd('g.i', 6)} < 0.3
         THEN CASE WHEN ${rnd('g.i', 11)} < 0.5 THEN jsonb_build_object('kind', 'system', 'source', 'mission-runner')
                   ELSE jsonb_build_object('kind', 'ai', 'missionId', t.mid, 'iterationId', md5('it:' || mk.m || ':' || mk.k)::uuid::text) END
         ELSE jsonb_build_object('kind', 'user', 'userId', t.user_id) END AS actor,
    CASE WHEN NOT mk.noise AND t.op = 'update' AND ${rnd('g.i', 6)} < 0.3 THEN 'agent' ELSE 'user' END AS origin,
    'client-' || substr(t.user_id, 1, 6) || '-' || ${pick('g.i', 12, 3)} AS client_id
  OFFSET 0
) v`;
}

/**
 * Fills sync_changes (which must exist, e.g. via migrate with the dev table)
 * with the history. Returns the number of rows written.
 */
export async function generateHistory(sql: Sql, opts: HistoryOptions = {}): Promise<number> {
  const rows = opts.rows ?? HISTORY_DEFAULTS.rows;
  const perUser = opts.missionsPerUser ?? HISTORY_DEFAULTS.missionsPerUser;
  const missions = (opts.users ?? HISTORY_DEFAULTS.users) * perUser;
  const seed = opts.seed ?? HISTORY_DEFAULTS.seed;
  const chunk = opts.chunk ?? 100_000;
  const every = Math.trunc(opts.noiseEvery ?? 5);
  if (every < 2) throw new Error(`noiseEvery: expected an integer >= 2, got ${opts.noiseEvery}`);
  const text = insertSql()
    .replaceAll('$seed', `${Math.trunc(seed)}::bigint`)
    .replaceAll('$every', String(every))
    .replaceAll('$ahead', opts.runsAheadYears ? `make_interval(years => ${Math.trunc(opts.runsAheadYears)}) +` : '');
  // Index maintenance on a million random uuids costs more than the rows:
  // drop sync_changes' indexes, fill, then rebuild them from their own definitions.
  const indexes = await sql<{ name: string; def: string; constraint: string | null }[]>`
    SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def,
           (SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype = 'p') AS constraint
    FROM pg_index i WHERE i.indrelid = 'sync_changes'::regclass`;
  for (const ix of indexes) {
    if (ix.constraint) await sql.unsafe(`ALTER TABLE sync_changes DROP CONSTRAINT ${ix.name}`);
    else await sql.unsafe(`DROP INDEX ${ix.name}`);
  }
  // Two connections fill disjoint ranges in parallel (one per core here).
  const ranges: [number, number][] = [];
  for (let lo = 0; lo < rows; lo += chunk) ranges.push([lo, Math.min(rows, lo + chunk)]);
  let done = 0;
  const worker = async () => {
    for (let r = ranges.shift(); r; r = ranges.shift()) {
      await sql.begin(async (tx) => {
        // JIT compiling these big expressions costs more than it saves.
        await tx`SET LOCAL jit = off`;
        await tx.unsafe(text, [r[0], r[1], rows, missions, perUser]);
      });
      done += r[1] - r[0];
      opts.progress?.(`generated ${done.toLocaleString('en-US')} / ${rows.toLocaleString('en-US')} rows`);
    }
  };
  await Promise.all([worker(), worker()]);
  const rebuild = async (ix: (typeof indexes)[number]) =>
    sql.begin(async (tx) => {
      await tx`SET LOCAL maintenance_work_mem = '256MB'`;
      await tx.unsafe(ix.constraint ? `ALTER TABLE sync_changes ADD CONSTRAINT ${ix.name} ${ix.constraint}` : ix.def);
    });
  const queue = [...indexes];
  await Promise.all([0, 1].map(async () => {
    for (let ix = queue.shift(); ix; ix = queue.shift()) await rebuild(ix);
  }));
  opts.progress?.(`rebuilt ${indexes.length} indexes`);
  await sql`VACUUM (ANALYZE) sync_changes`;
  return rows;
}

/**
 * Appends `count` realistic new rows for existing missions, stamped now (as
 * mana-sync does: created_at defaults to the writer's transaction start):
 * runner iterations with nextRunAt, reschedules and state changes.
 */
export async function appendUpdates(sql: Sql, opts: { count: number; round: number; users?: number; missionsPerUser?: number; seed?: number }): Promise<void> {
  const missions = (opts.users ?? HISTORY_DEFAULTS.users) * (opts.missionsPerUser ?? HISTORY_DEFAULTS.missionsPerUser);
  const seed = (opts.seed ?? HISTORY_DEFAULTS.seed) + 7 * opts.round + 1;
  await sql.unsafe(
    `
INSERT INTO sync_changes (id, app_id, table_name, record_id, user_id, op, data, field_meta, client_id, actor, origin, space_id)
SELECT gen_random_uuid(), 'ai', 'aiMissions', md5('mission:' || m)::uuid::text, substr(md5('user:' || (m / 5)), 1, 24), 'update',
       d.data,
       (SELECT jsonb_object_agg(k, a.at_iso) FROM jsonb_object_keys(d.data) k),
       'client-bench', jsonb_build_object('kind', 'user'), 'user',
       CASE WHEN m % 40 = 0 THEN 'team-' || (m / 40 % 50) ELSE 'space-' || substr(md5('space:' || substr(md5('user:' || (m / 5)), 1, 24)), 1, 20) END
FROM generate_series(0, $1::int - 1) g(i)
CROSS JOIN LATERAL (SELECT (hashint8extended(g.i, $3::bigint) & 2147483647) % $2::int AS m,
                           (hashint8extended(g.i, $3::bigint + 1) & 2147483647)::float8 / 2147483648 AS r) p
CROSS JOIN LATERAL (SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at_iso,
                           to_char((now() + interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS next_iso) a
CROSS JOIN LATERAL (SELECT CASE
   WHEN p.r < 0.4 THEN jsonb_build_object('iterations', jsonb_build_array(jsonb_build_object(
        'id', gen_random_uuid()::text, 'startedAt', a.at_iso, 'finishedAt', a.at_iso,
        'plan', jsonb_build_array(jsonb_build_object('id', 'bench-0', 'summary', 'Follow up',
            'intent', jsonb_build_object('kind', 'toolCall', 'toolName', 'create_task', 'params', jsonb_build_object('title', 'Follow up')),
            'status', 'planned')),
        'summary', 'Bench run', 'overallStatus', 'awaiting-review', 'source', 'browser')),
        'nextRunAt', a.next_iso, 'updatedAt', a.at_iso)
   WHEN p.r < 0.8 THEN jsonb_build_object('nextRunAt', a.next_iso, 'updatedAt', a.at_iso)
   ELSE jsonb_build_object('state', CASE WHEN p.r < 0.9 THEN 'paused' ELSE 'active' END, 'updatedAt', a.at_iso) END AS data) d`,
    [opts.count, missions, seed],
  );
}

