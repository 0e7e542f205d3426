/**
 * iterationId = UUIDv5 of (userId, missionId, dueAt): every instance, tick
 * and device derives the same id for the same occurrence, so creation and
 * dedup are idempotent by construction.
 */
import { createHash } from 'node:crypto';

/** Our namespace (a fixed random UUID); changing it would re-key every occurrence. */
const NAMESPACE = Buffer.from('6f1c9a52-2b7e-4b8e-9d55-3c8f0e4a7d21'.replace(/-/g, ''), 'hex');

function uuidV5(name: string): string {
  const hash = createHash('sha1').update(NAMESPACE).update(name, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const h = hash.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** dueAt must be the canonical instant (projection/instant.ts) so every party hashes the same string. */
export function iterationIdFor(userId: string, missionId: string, dueAt: string): string {
  // Length-prefixed parts: no separator choice can make two triples collide.
  return uuidV5(`${userId.length}:${userId}|${missionId.length}:${missionId}|${dueAt}`);
}
