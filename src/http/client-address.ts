/**
 * The client address a request came from, for per-client limits. Behind an
 * ingress every socket is the proxy's, so wrong service keys from anyone
 * would spend one budget; TRUST_PROXY says which hops of X-Forwarded-For to
 * believe. Pure.
 *
 * X-Forwarded-For lists the addresses each proxy saw, client first; the
 * socket's own address is the last hop. A caller can write any entries it
 * likes at the left, never the ones a trusted proxy appends at the right, so
 * the client is found by walking from the right past the trusted hops:
 * - a hop count N: the N proxies in front of this service are trusted (use it
 *   only when nothing reaches the service except through them: a caller that
 *   connects directly chooses the address it is counted under);
 * - a list of addresses and CIDR ranges: a hop is trusted while its address
 *   is in the list; a direct caller's X-Forwarded-For is then never read.
 */
import { BlockList, isIP } from 'node:net';

export type TrustProxy =
  | { kind: 'none' }
  | { kind: 'hops'; hops: number }
  | { kind: 'list'; list: BlockList; entries: string[] };

export const MAX_TRUSTED_HOPS = 10;

/** The socket address as the list compares it: an IPv4-mapped IPv6 address is its IPv4 address. */
function plain(address: string): string {
  const a = address.trim().replace(/^\[(.*)\](:\d+)?$/, '$1');
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a;
}

/** Parses TRUST_PROXY; a string is the problem with the value. */
export function parseTrustProxy(value: string | undefined): TrustProxy | string {
  const v = (value ?? '').trim();
  if (v === '' || v === 'false' || v === '0') return { kind: 'none' };
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    return hops <= MAX_TRUSTED_HOPS ? { kind: 'hops', hops } : `expected at most ${MAX_TRUSTED_HOPS} hops`;
  }
  const list = new BlockList();
  const entries = v.split(',').map((e) => e.trim()).filter(Boolean);
  for (const entry of entries) {
    const [address, prefix, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const type = family === 6 ? 'ipv6' : 'ipv4';
    const bits = prefix === undefined ? undefined : /^\d+$/.test(prefix) ? Number(prefix) : NaN;
    if (family === 0 || extra !== undefined || (bits !== undefined && !(bits <= (family === 6 ? 128 : 32)))) {
      return `expected a hop count (1-${MAX_TRUSTED_HOPS}) or a comma-separated list of IP addresses and CIDR ranges, got "${entry}"`;
    }
    if (bits === undefined) list.addAddress(address!, type);
    else list.addSubnet(address!, bits, type);
  }
  return { kind: 'list', list, entries };
}

function trusted(list: BlockList, address: string): boolean {
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** The address a request is counted under. */
export function clientAddress(socketAddress: string | undefined, forwardedFor: string | undefined, trust: TrustProxy): string {
  const socket = plain(socketAddress ?? '') || 'unknown';
  if (trust.kind === 'none' || forwardedFor === undefined) return socket;
  const chain = [...forwardedFor.split(',').map(plain).filter(Boolean), socket];
  let i = chain.length - 1;
  if (trust.kind === 'hops') i = Math.max(0, i - trust.hops);
  else while (i > 0 && trusted(trust.list, chain[i]!)) i--;
  return chain[i]!;
}
