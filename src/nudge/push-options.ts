/**
 * What a Web Push send takes and returns, and the checks on its options
 * (RFC 8030 §5: TTL, Topic, Urgency). Pure: no I/O.
 */
import { createHash } from 'node:crypto';
import { allowlistEntryOf, type Allowlist } from '../devices/endpoint-guard.js';

export type Urgency = 'very-low' | 'low' | 'normal' | 'high';

export interface PushSubscriptionTarget {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

export interface PushSendOptions {
  /** Seconds the push service may hold the message (the claim deadline). */
  ttlSeconds: number;
  /** ≤ 32 base64url characters; a newer message with the same topic replaces a stored one. */
  topic?: string;
  /** Default `high`: a due mission should wake the device now. */
  urgency?: Urgency;
}

export type PushFailureReason =
  | 'circuit-open'
  | 'endpoint-refused'
  | 'timeout'
  | 'network-error'
  | 'server-error'
  | 'rate-limited'
  | 'invalid-request'
  | 'invalid-subscription'
  | 'payload-too-large'
  | 'sender-closed';

/** `attempts` counts HTTP requests made (0 when none was). */
export type PushOutcome =
  | { kind: 'delivered'; status: number; attempts: number }
  | { kind: 'gone'; status: number; attempts: number }
  | { kind: 'rejected'; status: number; reason: string; attempts: number }
  | { kind: 'failed'; reason: PushFailureReason; retryable: boolean; retryAfterMs?: number; detail?: string; attempts: number };

/** aes128gcm with one 4096-byte record: 4096 − 16 (tag) − 1 (delimiter) − 86 (header). */
export const MAX_PAYLOAD_BYTES = 3993;
const MAX_TTL_SECONDS = 28 * 24 * 60 * 60;
const TOPIC = /^[A-Za-z0-9_-]{1,32}$/;
const URGENCIES: ReadonlySet<string> = new Set(['very-low', 'low', 'normal', 'high']);

/** A stable Topic for a mission: base64url(SHA-256(missionId)) cut to 32 characters. */
export function topicForMission(missionId: string): string {
  return createHash('sha256').update(missionId).digest('base64url').slice(0, 32);
}

/** True when `topic` is 1–32 characters of the base64url alphabet (RFC 8030 §5.4). */
export function isValidTopic(topic: string): boolean {
  return TOPIC.test(topic);
}

/** What is wrong with the options (a caller's bug), or undefined. */
export function invalidOptions(opts: PushSendOptions): string | undefined {
  if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 0 || opts.ttlSeconds > MAX_TTL_SECONDS) {
    return `expected ttlSeconds as an integer in 0…${MAX_TTL_SECONDS}, got ${opts.ttlSeconds}`;
  }
  if (opts.topic !== undefined && !isValidTopic(opts.topic)) {
    return 'expected topic as 1–32 base64url characters';
  }
  if (opts.urgency !== undefined && !URGENCIES.has(opts.urgency)) {
    return `expected urgency very-low|low|normal|high, got ${String(opts.urgency)}`;
  }
  return undefined;
}

/** The allowlist entry an endpoint matches, as a metric label; otherwise a fixed word (bounded cardinality). */
export function labelOrigin(endpoint: string, allowlist: Allowlist): string {
  try {
    return allowlistEntryOf(new URL(endpoint), allowlist) ?? 'unlisted';
  } catch {
    return 'unlisted';
  }
}
