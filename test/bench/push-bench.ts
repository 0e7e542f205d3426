/**
 * Web Push throughput: `node --import tsx test/bench/push-bench.ts [messages] [runs]`
 *
 * A local HTTPS receiver answering 201 runs in a child process (its own core,
 * so it does not share the sender's event loop); its certificate is a fresh
 * self-signed P-256 one made with `openssl` per run and trusted through `ca`
 * (no NODE_TLS_REJECT_UNAUTHORIZED). Each of N subscriptions has its own
 * ECDH key pair and auth secret, so every message is encrypted for a
 * different recipient, as in production. Measured, in messages per second:
 *
 *   (a)  `webpush.sendNotification`, concurrency 32, a fresh TLS connection per
 *        message (an https.Agent without keep-alive) — the naive baseline;
 *   (a') the same with a keep-alive agent (maxSockets 32), for reference;
 *   (b)  our sender (`createPushSender`), the whole burst handed to it at once;
 *   (c)  `webpush.encrypt` alone per subscription — the crypto ceiling.
 *
 * Targets: (b) ≥ 5 × (a) and (b) ≥ 40 % of (c).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createECDH, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import webpush from 'web-push';
import { parseAllowlist } from '../../src/devices/endpoint-guard.js';
import { createVapidHeaders, generateVapidKeys } from '../../src/nudge/vapid.js';
import { createPushSender, topicForMission } from '../../src/nudge/web-push.js';

export interface RateStats {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export interface PushBenchResult {
  messages: number;
  runs: number;
  baseline: RateStats;
  baselineKeepAlive: RateStats;
  sender: RateStats;
  encrypt: RateStats;
  /** (b) / (a), (b) / (a'), (b) / (c), on medians. */
  ratios: { senderOverBaseline: number; senderOverKeepAlive: number; senderOverEncrypt: number };
  targetsMet: { fiveTimesBaseline: boolean; fortyPercentOfEncrypt: boolean };
}

const RECEIVER_SOURCE = `
const https = require('node:https');
const fs = require('node:fs');
const server = https.createServer({ key: fs.readFileSync(process.env.KEY_PATH), cert: fs.readFileSync(process.env.CERT_PATH) }, (req, res) => {
  req.resume();
  req.on('end', () => { res.writeHead(201); res.end(); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
process.on('disconnect', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

interface Receiver {
  origin: string;
  ca: Buffer;
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
  const child: ChildProcess = spawn(process.execPath, ['-e', RECEIVER_SOURCE], {
    env: { ...process.env, KEY_PATH: keyPath, CERT_PATH: certPath },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  const port = Number(chunk.toString().trim());
  return {
    origin: `https://127.0.0.1:${port}`,
    ca,
    async stop() {
      child.stdin?.end();
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

function stats(runs: number[]): RateStats {
  const sorted = [...runs].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, runs };
}

async function rate(n: number, fn: () => Promise<void> | void): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return n / seconds;
}

/** Runs the benchmark; `messages` per run (default 2,000), `runs` per mode (default 5) after one warm-up. */
export async function runPushBench(opts: { messages?: number; runs?: number; progress?: (line: string) => void } = {}): Promise<PushBenchResult> {
  const messages = opts.messages ?? 2_000;
  const runs = opts.runs ?? 5;
  const progress = opts.progress ?? (() => undefined);
  const receiver = await startReceiver();
  try {
    const keys = generateVapidKeys();
    const subject = 'mailto:bench@mana.example';
    const subs = makeSubscriptions(receiver.origin, messages);
    const payloads = subs.map((_, i) => JSON.stringify(nudge(i)));
    const topics = subs.map((_, i) => topicForMission(`mission-${i}`));
    const vapidDetails = { subject, publicKey: keys.publicKey, privateKey: keys.privateKey };

    const baselineOnce = (keepAlive: boolean) => async () => {
      const agent = new Agent({ ca: receiver.ca, keepAlive, maxSockets: 32 });
      await withConcurrency(messages, 32, async (i) => {
        const res = await webpush.sendNotification(subs[i]!, payloads[i]!, { vapidDetails, TTL: 120, urgency: 'high', topic: topics[i]!, agent });
        if (res.statusCode !== 201) throw new Error(`baseline got ${res.statusCode}`);
      });
      agent.destroy();
    };

    const senderOnce = async () => {
      const sender = createPushSender({
        vapid: createVapidHeaders({ ...keys, subject }),
        allowlist: parseAllowlist(receiver.origin),
        registry: new Registry(),
        log: pino({ level: 'silent' }),
        tlsCa: receiver.ca,
      });
      const outcomes = await Promise.all(subs.map((sub, i) => sender.send(sub, nudge(i), { ttlSeconds: 120, topic: topics[i]! })));
      await sender.close();
      const bad = outcomes.find((o) => o.kind !== 'delivered');
      if (bad !== undefined) throw new Error(`sender got ${JSON.stringify(bad)}`);
    };

    const encryptOnce = () => {
      for (let i = 0; i < messages; i++) webpush.encrypt(subs[i]!.keys.p256dh, subs[i]!.keys.auth, payloads[i]!, 'aes128gcm');
    };

    const modes: [keyof Pick<PushBenchResult, 'baseline' | 'baselineKeepAlive' | 'sender' | 'encrypt'>, () => Promise<void> | void][] = [
      ['baseline', baselineOnce(false)],
      ['baselineKeepAlive', baselineOnce(true)],
      ['sender', senderOnce],
      ['encrypt', encryptOnce],
    ];
    const measured: Record<string, number[]> = {};
    for (const [name, fn] of modes) {
      await fn(); // warm-up, discarded
      measured[name] = [];
    }
    // Interleave the modes so drift (thermal, other load) hits all of them alike.
    for (let r = 0; r < runs; r++) {
      for (const [name, fn] of modes) {
        const perSecond = await rate(messages, fn);
        measured[name]!.push(perSecond);
        progress(`run ${r + 1}/${runs} ${name}: ${perSecond.toFixed(0)} msg/s`);
      }
    }
    const baseline = stats(measured['baseline']!);
    const baselineKeepAlive = stats(measured['baselineKeepAlive']!);
    const sender = stats(measured['sender']!);
    const encrypt = stats(measured['encrypt']!);
    const ratios = {
      senderOverBaseline: sender.median / baseline.median,
      senderOverKeepAlive: sender.median / baselineKeepAlive.median,
      senderOverEncrypt: sender.median / encrypt.median,
    };
    return {
      messages,
      runs,
      baseline,
      baselineKeepAlive,
      sender,
      encrypt,
      ratios,
      targetsMet: { fiveTimesBaseline: ratios.senderOverBaseline >= 5, fortyPercentOfEncrypt: ratios.senderOverEncrypt >= 0.4 },
    };
  } finally {
    await receiver.stop();
  }
}

/** The result as the Markdown table BENCHMARKS.md carries. */
export function formatPushBench(r: PushBenchResult): string {
  const row = (label: string, s: RateStats) => `| ${label} | ${s.median.toFixed(0)} | ${s.min.toFixed(0)} | ${s.max.toFixed(0)} |`;
  return [
    `${r.messages} subscriptions (own keys each), ${r.runs} runs per mode after a warm-up, msg/s:`,
    '',
    '| mode | median | min | max |',
    '|---|---:|---:|---:|',
    row('(a) webpush.sendNotification, concurrency 32, no keep-alive', r.baseline),
    row("(a') webpush.sendNotification, concurrency 32, keep-alive agent", r.baselineKeepAlive),
    row('(b) createPushSender (pool per origin, 64 connections, cached VAPID)', r.sender),
    row('(c) webpush.encrypt alone (crypto ceiling, one core)', r.encrypt),
    '',
    `(b)/(a) = ${r.ratios.senderOverBaseline.toFixed(2)}× (target ≥ 5×: ${r.targetsMet.fiveTimesBaseline ? 'met' : 'MISSED'}); ` +
      `(b)/(a') = ${r.ratios.senderOverKeepAlive.toFixed(2)}×; ` +
      `(b)/(c) = ${(r.ratios.senderOverEncrypt * 100).toFixed(0)} % (target ≥ 40 %: ${r.targetsMet.fortyPercentOfEncrypt ? 'met' : 'MISSED'})`,
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const messages = process.argv[2] === undefined ? undefined : Number(process.argv[2]);
  const runs = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
  const result = await runPushBench({ messages, runs, progress: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(`${formatPushBench(result)}\n`);
}
