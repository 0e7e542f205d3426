/**
 * Web Push throughput: `node --import tsx test/bench/push-bench.ts [messages] [rounds]`
 *
 * A local HTTPS receiver answering 201 runs in a child process (so it does
 * not share the sender's event loop); its certificate is a throwaway
 * self-signed P-256 one made with `openssl` and trusted through `ca` (no
 * NODE_TLS_REJECT_UNAUTHORIZED). Each of N subscriptions has its own ECDH key
 * pair and auth secret, so every message is encrypted for a different
 * recipient, as in production. Modes, interleaved round by round:
 *
 *   (a)  `webpush.sendNotification`, concurrency 32, https.Agent without
 *        keep-alive: a new TLS connection per message (Node's agent still
 *        resumes TLS sessions) and a new VAPID signature per message;
 *   (a') the same with a keep-alive agent (maxSockets 32) — what web-push does
 *        by default on Node ≥ 19, whose global agent keeps connections alive;
 *   (b)  our sender (`createPushSender` with its defaults: 64 connections per
 *        origin, cached VAPID, encryption on cores − 1 worker threads with the
 *        event loop helping once they are full), the whole burst handed to it
 *        at once;
 *   (b0) our sender with encryption inline on the event loop (encryptThreads 0);
 *   (c)  `webpush.encrypt` alone per subscription — the crypto ceiling.
 *
 * Besides msg/s (wall clock), it reports CPU time per message of the sending
 * process (all its threads) and of the receiver: on a shared machine wall
 * clock swings with other load, CPU per message much less.
 *
 * Targets: (b) ≥ 5 × (a) and (b) ≥ 40 % of (c).
 */
import { spawn, execFileSync } from 'node:child_process';
import { createECDH, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:https';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import webpush from 'web-push';
import { parseAllowlist } from '../../src/devices/endpoint-guard.js';
import { createVapidHeaders, generateVapidKeys } from '../../src/nudge/vapid.js';
import { defaultEncryptThreads } from '../../src/nudge/web-push-encrypt.js';
import { createPushSender, topicForMission, type PushSender } from '../../src/nudge/web-push.js';

export interface Stats {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

type Mode = 'baseline' | 'baselineKeepAlive' | 'sender' | 'senderInline' | 'encrypt';

export interface ModeResult {
  /** Messages per second, wall clock. */
  rate: Stats;
  /** CPU µs per message in the sending process (all threads). */
  senderCpuUs: Stats;
  /** CPU µs per message in the receiver process. */
  receiverCpuUs: Stats;
}

export interface PushBenchResult {
  messages: number;
  rounds: number;
  cpus: number;
  encryptThreads: number;
  /** 1-minute load average before and after: how shared the machine was. */
  load: { before: number; after: number };
  modes: Record<Mode, ModeResult>;
  /** Medians of per-round ratios of msg/s (a round's modes ran back to back, under similar load). */
  ratios: { senderOverBaseline: number; senderOverKeepAlive: number; senderInlineOverBaseline: number; senderOverEncrypt: number };
  targetsMet: { fiveTimesBaseline: boolean; fortyPercentOfEncrypt: boolean };
}

const RECEIVER_SOURCE = `
const https = require('node:https');
const fs = require('node:fs');
const readline = require('node:readline');
const server = https.createServer({ key: fs.readFileSync(process.env.KEY_PATH), cert: fs.readFileSync(process.env.CERT_PATH) }, (req, res) => {
  req.resume();
  req.on('end', () => { res.writeHead(201); res.end(); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
readline.createInterface({ input: process.stdin }).on('line', () => {
  const u = process.cpuUsage();
  process.stdout.write(String(u.user + u.system) + '\\n');
}).on('close', () => process.exit(0));
`;

interface Receiver {
  origin: string;
  ca: Buffer;
  /** Total CPU µs the receiver process has used. */
  cpuUs(): Promise<number>;
  stop(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const dir = mkdtempSync(join(tmpdir(), 'push-bench-'));
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', keyPath, '-out', certPath,
    ], { stdio: 'ignore' });
  } catch (e: unknown) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error('push-bench needs `openssl` on PATH to make a throwaway certificate', { cause: e });
  }
  const ca = readFileSync(certPath);
  const child = spawn(process.execPath, ['-e', RECEIVER_SOURCE], {
    env: { ...process.env, KEY_PATH: keyPath, CERT_PATH: certPath },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async () => {
    const { value, done } = await lines.next();
    if (done === true) throw new Error('push-bench receiver exited');
    return String(value);
  };
  const port = Number(await nextLine());
  return {
    origin: `https://127.0.0.1:${port}`,
    ca,
    async cpuUs() {
      child.stdin.write('cpu\n');
      return Number(await nextLine());
    },
    async stop() {
      child.stdin.end();
      if (child.exitCode === null) await once(child, 'exit');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function makeSubscriptions(origin: string, n: number) {
  return Array.from({ length: n }, (_, i) => {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    return {
      endpoint: `${origin}/push/${i}-${randomBytes(16).toString('base64url')}`,
      keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') },
    };
  });
}

function nudge(i: number) {
  return { type: 'mission-due', missionId: `mission-${i}`, iterationId: '6f1c1f0e-6a53-5d0e-9a3b-2f4f1f5b7a10', dueAt: '2025-11-25T09:00:00.000Z' };
}

async function withConcurrency(n: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

function stats(runs: number[]): Stats {
  const sorted = [...runs].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, runs };
}

/**
 * Runs the benchmark: `messages` per run (default 2,000) and `rounds` rounds
 * (default 5) of all modes, interleaved, after one discarded warm-up round.
 */
export async function runPushBench(opts: { messages?: number; rounds?: number; progress?: (line: string) => void } = {}): Promise<PushBenchResult> {
  const messages = opts.messages ?? 2_000;
  const rounds = opts.rounds ?? 5;
  const progress = opts.progress ?? (() => undefined);
  const loadBefore = loadavg()[0] ?? 0;
  const receiver = await startReceiver();
  const keys = generateVapidKeys();
  const subject = 'mailto:bench@mana.example';
  const subs = makeSubscriptions(receiver.origin, messages);
  const payloads = subs.map((_, i) => JSON.stringify(nudge(i)));
  const topics = subs.map((_, i) => topicForMission(`mission-${i}`));
  const vapidDetails = { subject, publicKey: keys.publicKey, privateKey: keys.privateKey };

  // Long-lived clients, as in a running service: the warm-up round pays for
  // connections, TLS sessions, JIT and worker start-up.
  const agents = {
    fresh: new Agent({ ca: receiver.ca, keepAlive: false, maxSockets: 32 }),
    keepAlive: new Agent({ ca: receiver.ca, keepAlive: true, maxSockets: 32 }),
  };
  const makeSender = (encryptThreads?: number) =>
    createPushSender({
      ...(encryptThreads === undefined ? {} : { encryptThreads }),
      vapid: createVapidHeaders({ ...keys, subject }),
      allowlist: parseAllowlist(receiver.origin),
      registry: new Registry(),
      log: pino({ level: 'silent' }),
      tlsCa: receiver.ca,
    });
  const senders = { threaded: makeSender(), inline: makeSender(0) };

  const baselineOnce = (agent: Agent) => () =>
    withConcurrency(messages, 32, async (i) => {
      const res = await webpush.sendNotification(subs[i]!, payloads[i]!, { vapidDetails, TTL: 120, urgency: 'high', topic: topics[i]!, agent });
      if (res.statusCode !== 201) throw new Error(`baseline got ${res.statusCode}`);
    });
  const senderOnce = (sender: PushSender) => async () => {
    const outcomes = await Promise.all(subs.map((sub, i) => sender.send(sub, nudge(i), { ttlSeconds: 120, topic: topics[i]! })));
    const bad = outcomes.find((o) => o.kind !== 'delivered');
    if (bad !== undefined) throw new Error(`sender got ${JSON.stringify(bad)}`);
  };
  const encryptOnce = async () => {
    for (let i = 0; i < messages; i++) webpush.encrypt(subs[i]!.keys.p256dh, subs[i]!.keys.auth, payloads[i]!, 'aes128gcm');
  };

  const modes: [Mode, () => Promise<void>][] = [
    ['baseline', baselineOnce(agents.fresh)],
    ['baselineKeepAlive', baselineOnce(agents.keepAlive)],
    ['sender', senderOnce(senders.threaded)],
    ['senderInline', senderOnce(senders.inline)],
    ['encrypt', encryptOnce],
  ];
  const raw = Object.fromEntries(modes.map(([m]) => [m, { rate: [] as number[], senderCpuUs: [] as number[], receiverCpuUs: [] as number[] }])) as Record<
    Mode,
    { rate: number[]; senderCpuUs: number[]; receiverCpuUs: number[] }
  >;
  try {
    for (const [, fn] of modes) await fn(); // warm-up, discarded
    for (let r = 0; r < rounds; r++) {
      for (const [mode, fn] of modes) {
        const rx0 = await receiver.cpuUs();
        const cpu0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        await fn();
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        const cpu = process.cpuUsage(cpu0);
        const rx = (await receiver.cpuUs()) - rx0;
        raw[mode].rate.push(messages / seconds);
        raw[mode].senderCpuUs.push((cpu.user + cpu.system) / messages);
        raw[mode].receiverCpuUs.push(rx / messages);
        progress(`round ${r + 1}/${rounds} ${mode}: ${(messages / seconds).toFixed(0)} msg/s, ${((cpu.user + cpu.system) / messages).toFixed(0)} µs CPU/msg`);
      }
    }
  } finally {
    agents.fresh.destroy();
    agents.keepAlive.destroy();
    await Promise.all([senders.threaded.close(), senders.inline.close()]);
    await receiver.stop();
  }

  const perRound = (num: Mode, den: Mode) => stats(raw[num].rate.map((v, i) => v / raw[den].rate[i]!)).median;
  const ratios = {
    senderOverBaseline: perRound('sender', 'baseline'),
    senderOverKeepAlive: perRound('sender', 'baselineKeepAlive'),
    senderInlineOverBaseline: perRound('senderInline', 'baseline'),
    senderOverEncrypt: perRound('sender', 'encrypt'),
  };
  const summarise = (m: Mode): ModeResult => ({
    rate: stats(raw[m].rate),
    senderCpuUs: stats(raw[m].senderCpuUs),
    receiverCpuUs: stats(raw[m].receiverCpuUs),
  });
  return {
    messages,
    rounds,
    cpus: availableParallelism(),
    encryptThreads: defaultEncryptThreads(),
    load: { before: loadBefore, after: loadavg()[0] ?? 0 },
    modes: {
      baseline: summarise('baseline'),
      baselineKeepAlive: summarise('baselineKeepAlive'),
      sender: summarise('sender'),
      senderInline: summarise('senderInline'),
      encrypt: summarise('encrypt'),
    },
    ratios,
    targetsMet: { fiveTimesBaseline: ratios.senderOverBaseline >= 5, fortyPercentOfEncrypt: ratios.senderOverEncrypt >= 0.4 },
  };
}

/** The result as the Markdown BENCHMARKS.md carries. */
export function formatPushBench(r: PushBenchResult): string {
  const f = (n: number) => n.toFixed(0);
  const row = (label: string, m: ModeResult) =>
    `| ${label} | ${f(m.rate.median)} | ${f(m.rate.min)} | ${f(m.rate.max)} | ${f(m.senderCpuUs.median)} | ${f(m.receiverCpuUs.median)} |`;
  const x = (n: number) => `${n.toFixed(2)}×`;
  return [
    `${r.messages} subscriptions (own keys each); ${r.rounds} interleaved rounds after a warm-up round; ` +
      `${r.cpus} cores; load average ${r.load.before.toFixed(1)} → ${r.load.after.toFixed(1)}.`,
    '',
    '| mode | msg/s median | min | max | sender CPU µs/msg | receiver CPU µs/msg |',
    '|---|---:|---:|---:|---:|---:|',
    row('(a) webpush.sendNotification, concurrency 32, no keep-alive', r.modes.baseline),
    row("(a') webpush.sendNotification, concurrency 32, keep-alive agent", r.modes.baselineKeepAlive),
    row(`(b) createPushSender, defaults (${r.encryptThreads} encryption thread${r.encryptThreads === 1 ? '' : 's'} + event-loop help)`, r.modes.sender),
    row('(b0) createPushSender, encryption inline (encryptThreads 0)', r.modes.senderInline),
    row('(c) webpush.encrypt alone', r.modes.encrypt),
    '',
    `Per-round ratios (median): (b)/(a) = ${x(r.ratios.senderOverBaseline)} (target ≥ 5×: ${r.targetsMet.fiveTimesBaseline ? 'met' : 'MISSED'}); ` +
      `(b)/(a') = ${x(r.ratios.senderOverKeepAlive)}; (b0)/(a) = ${x(r.ratios.senderInlineOverBaseline)}; ` +
      `(b)/(c) = ${(r.ratios.senderOverEncrypt * 100).toFixed(0)} % (target ≥ 40 %: ${r.targetsMet.fortyPercentOfEncrypt ? 'met' : 'MISSED'}).`,
  ].join('\n');
}

/** For `npm run bench` (test/bench/run.ts): the defaults, or PUSH_BENCH_MESSAGES / PUSH_BENCH_ROUNDS. */
export async function run(): Promise<void> {
  const env = (name: string) => (process.env[name] ? Number(process.env[name]) : undefined);
  const result = await runPushBench({
    messages: env('PUSH_BENCH_MESSAGES'),
    rounds: env('PUSH_BENCH_ROUNDS'),
    progress: (line) => process.stderr.write(`[push-bench] ${line}\n`),
  });
  process.stdout.write(`${formatPushBench(result)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const messages = process.argv[2] === undefined ? undefined : Number(process.argv[2]);
  const rounds = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
  const result = await runPushBench({ messages, rounds, progress: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(`${formatPushBench(result)}\n`);
}
