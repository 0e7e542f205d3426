/**
 * SSRF guard for Web Push endpoints. Endpoints are URLs that users supplied and
 * that the server will POST to, so an endpoint is accepted only when
 *
 * - it names an origin the operator listed exactly (`http://127.0.0.1:8090`):
 *   allowed as-is, loopback included — how tests, benchmarks and the dev
 *   default reach a local push service; or
 * - it is `https:` on the default port, without user info, its host matches a
 *   host pattern (`*.googleapis.com`, `fcm.googleapis.com`), and EVERY address
 *   the host resolves to is public (checked again at connect time by
 *   {@link createGuardedLookup}, so DNS rebinding between check and connect
 *   cannot reach an internal address).
 *
 * Refusal reasons say what was expected and what came, and never contain the
 * endpoint's path (it is a bearer secret for the push service).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * The hosts the browsers' push services really use: Chrome, Chromium-based
 * browsers and Android (FCM), Firefox (Mozilla autopush), Safari and iOS
 * (Apple), and legacy Edge (WNS, whose hosts vary by region, hence its one
 * pattern). Exact hosts wherever possible: a pattern such as
 * `*.googleapis.com` would let endpoints point at any Google API.
 */
export const DEFAULT_PUSH_ALLOWLIST = 'fcm.googleapis.com,updates.push.services.mozilla.com,web.push.apple.com,*.notify.windows.com';

export interface Allowlist {
  /** Exact origins (`http://127.0.0.1:8090`): allowed as-is, no address checks. */
  readonly origins: ReadonlySet<string>;
  /** Exact host names, lowercase. */
  readonly hosts: ReadonlySet<string>;
  /** Wildcard suffixes with their leading dot (`.googleapis.com` for `*.googleapis.com`). */
  readonly suffixes: readonly string[];
  /** The entries as written, for messages. */
  readonly entries: readonly string[];
}

/** Resolves a host name to all its addresses (IPv4 and IPv6). */
export type Resolve = (host: string) => Promise<string[]>;

export type EndpointCheck =
  | { ok: true; url: URL; pinnedAddress?: string }
  | { ok: false; reason: string };

const HOST_PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/**
 * Parses a comma-separated allowlist. Throws on an entry it cannot read, so a
 * typo in configuration stops the start instead of silently refusing (or
 * allowing) endpoints.
 */
export function parseAllowlist(csv: string): Allowlist {
  const origins = new Set<string>();
  const hosts = new Set<string>();
  const suffixes: string[] = [];
  const entries: string[] = [];
  for (const raw of csv.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    entries.push(entry);
    if (entry.includes('://')) {
      origins.add(parseOriginEntry(entry));
      continue;
    }
    if (isIP(entry) === 6) {
      // Store the URL parser's canonical form, which is what endpoints compare against.
      hosts.add(normaliseHost(new URL(`https://[${entry}]/`).hostname));
      continue;
    }
    const host = entry.toLowerCase();
    if (!HOST_PATTERN.test(host)) {
      throw new Error(`push allowlist: expected a host pattern like *.example.com or an origin like https://localhost:9443, got "${entry}"`);
    }
    if (host.startsWith('*.')) suffixes.push(host.slice(1));
    else hosts.add(host);
  }
  return { origins, hosts, suffixes, entries };
}

function parseOriginEntry(entry: string): string {
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    throw new Error(`push allowlist: expected an origin like http://127.0.0.1:8090, got "${entry}"`);
  }
  const bare = url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !bare || entry.endsWith('/')) {
    throw new Error(`push allowlist: expected a bare http(s) origin (scheme, host, optional port; no path), got "${entry}"`);
  }
  return url.origin;
}

/** True when `host` (lowercase, no trailing dot) matches a host entry or pattern. */
export function hostMatches(host: string, allowlist: Allowlist): boolean {
  return hostEntryOf(host, allowlist) !== undefined;
}

function hostEntryOf(host: string, allowlist: Allowlist): string | undefined {
  if (allowlist.hosts.has(host)) return host;
  // `*.googleapis.com` matches `a.googleapis.com` and `a.b.googleapis.com`, not `googleapis.com`.
  const suffix = allowlist.suffixes.find((sfx) => host.length > sfx.length && host.endsWith(sfx));
  return suffix === undefined ? undefined : `*${suffix}`;
}

/**
 * The allowlist entry an endpoint URL matches (an exact origin, a host, or a
 * `*.pattern`), or undefined. Per-origin state keyed by this (metric labels,
 * circuit breakers) is bounded by the allowlist, not by what users send.
 */
export function allowlistEntryOf(url: URL, allowlist: Allowlist): string | undefined {
  if (allowlist.origins.has(url.origin)) return url.origin;
  return hostEntryOf(normaliseHost(url.hostname.toLowerCase()), allowlist);
}

/**
 * Checks a push endpoint against the allowlist and the addresses its host
 * resolves to. `opts.resolve` defaults to the system resolver (all addresses,
 * both families).
 */
export async function checkPushEndpoint(
  endpoint: string,
  allowlist: Allowlist,
  opts: { resolve?: Resolve } = {},
): Promise<EndpointCheck> {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return { ok: false, reason: 'expected an absolute URL, got an unparseable endpoint' };
  }
  if (url.username !== '' || url.password !== '') {
    return { ok: false, reason: 'expected an endpoint without user info, got user:password@' };
  }
  if (allowlist.origins.has(url.origin)) return { ok: true, url };
  if (url.protocol !== 'https:') {
    return { ok: false, reason: `expected an https: endpoint, got ${url.protocol}` };
  }
  if (url.port !== '') {
    return { ok: false, reason: `expected the default https port, got port ${url.port}` };
  }
  const host = normaliseHost(url.hostname);
  if (!hostMatches(host, allowlist)) {
    return { ok: false, reason: `expected a host matching the push allowlist (${allowlist.entries.join(', ') || 'empty'}), got ${host}` };
  }
  if (isIP(host) !== 0) {
    const refusal = addressRefusal(host);
    return refusal === undefined ? { ok: true, url, pinnedAddress: host } : { ok: false, reason: `expected a public address, got ${refusal}` };
  }
  const resolve = opts.resolve ?? resolveAll;
  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch (e: unknown) {
    const code = (e as { code?: unknown } | null)?.code;
    return { ok: false, reason: `expected ${host} to resolve, got ${typeof code === 'string' ? code : 'a resolver error'}` };
  }
  if (addresses.length === 0) return { ok: false, reason: `expected ${host} to resolve, got no addresses` };
  for (const address of addresses) {
    const refusal = addressRefusal(address);
    if (refusal !== undefined) {
      return { ok: false, reason: `expected every address of ${host} to be public, got ${refusal}` };
    }
  }
  return { ok: true, url, pinnedAddress: addresses[0] };
}

/** Strips IPv6 brackets and one trailing dot (`a.example.com.` is `a.example.com`). */
function normaliseHost(hostname: string): string {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

/** The system resolver: every address of both families, in resolver order. */
export async function resolveAll(host: string): Promise<string[]> {
  const results = await dnsLookup(host, { all: true, verbatim: true });
  return results.map((r) => r.address);
}

/**
 * Wraps a resolver with a short cache (default 60 s; failures 5 s) and one
 * lookup in flight per host, so the send-time re-check costs no DNS round trip
 * per message.
 */
export function createCachingResolver(
  resolve: Resolve = resolveAll,
  opts: { ttlMs?: number; errorTtlMs?: number; now?: () => number; maxEntries?: number } = {},
): Resolve {
  const ttlMs = opts.ttlMs ?? 60_000;
  const errorTtlMs = opts.errorTtlMs ?? 5_000;
  const now = opts.now ?? Date.now;
  const maxEntries = opts.maxEntries ?? 10_000;
  const cache = new Map<string, { expiresAt: number; result: Promise<string[]> }>();
  return function cachedResolve(host: string): Promise<string[]> {
    const hit = cache.get(host);
    if (hit !== undefined && hit.expiresAt > now()) return hit.result;
    if (cache.size >= maxEntries) cache.clear();
    const result = resolve(host);
    const entry = { expiresAt: Number.POSITIVE_INFINITY, result };
    cache.set(host, entry);
    result.then(
      () => { entry.expiresAt = now() + ttlMs; },
      () => { entry.expiresAt = now() + errorTtlMs; },
    );
    return result;
  };
}

/**
 * A `net`/`tls` lookup function for connections to pattern-matched hosts: it
 * resolves with `resolve` and refuses to connect unless every address is
 * public. This pins the connection to checked addresses (no DNS rebinding
 * between the send-time check and the connect).
 */
export function createGuardedLookup(resolve: Resolve): LookupFunction {
  return function guardedLookup(hostname, options, callback) {
    const wantAll = (options as { all?: boolean }).all === true;
    const host = normaliseHost(hostname);
    const addressesP = isIP(host) !== 0 ? Promise.resolve([host]) : resolve(host);
    addressesP.then(
      (addresses) => {
        const refusals = addresses.map(addressRefusal).filter((r) => r !== undefined);
        const first = addresses[0];
        if (first === undefined || refusals.length > 0) {
          const err = Object.assign(
            new Error(`push endpoint refused at connect: expected public addresses for ${host}, got ${refusals[0] ?? 'none'}`),
            { code: 'EPUSHREFUSED' },
          );
          callback(err, '', 0);
          return;
        }
        const family = (a: string) => (isIP(a) === 6 ? 6 : 4);
        if (wantAll) {
          (callback as unknown as (e: null, all: { address: string; family: number }[]) => void)(
            null,
            addresses.map((address) => ({ address, family: family(address) })),
          );
        } else {
          callback(null, first, family(first));
        }
      },
      (e: unknown) => callback(e as NodeJS.ErrnoException, '', 0),
    );
  };
}

interface Range {
  readonly label: string;
  readonly text: string;
  /** Node's BlockList does the CIDR matching (both families, IPv4-mapped forms included). */
  readonly list: BlockList;
}

function range(cidr: string, label: string): Range {
  const [network, bits] = cidr.split('/') as [string, string];
  const list = new BlockList();
  list.addSubnet(network, Number(bits), isIP(network) === 6 ? 'ipv6' : 'ipv4');
  return { label, text: cidr, list };
}

/** IPv4 ranges that a push service never lives in. */
const BLOCKED_IPV4: readonly Range[] = [
  range('0.0.0.0/8', 'unspecified'),
  range('10.0.0.0/8', 'private'),
  range('100.64.0.0/10', 'CGNAT'),
  range('127.0.0.0/8', 'loopback'),
  range('169.254.0.0/16', 'link-local'),
  range('172.16.0.0/12', 'private'),
  range('192.0.0.0/24', 'IETF protocol assignments'),
  range('192.0.2.0/24', 'documentation'),
  range('192.88.99.0/24', '6to4 relay'),
  range('192.168.0.0/16', 'private'),
  range('198.18.0.0/15', 'benchmarking'),
  range('198.51.100.0/24', 'documentation'),
  range('203.0.113.0/24', 'documentation'),
  range('224.0.0.0/4', 'multicast'),
  range('240.0.0.0/4', 'reserved'),
];

/** IPv6 ranges refused outright; the mapped range is unwrapped instead (below). */
const BLOCKED_IPV6: readonly Range[] = [
  range('::/128', 'unspecified'),
  range('::1/128', 'loopback'),
  range('::/96', 'IPv4-compatible'),
  range('64:ff9b::/96', 'NAT64'),
  range('64:ff9b:1::/48', 'local NAT64'),
  range('100::/64', 'discard'),
  range('2001::/32', 'Teredo'),
  range('2001::/23', 'IETF special-purpose'),
  range('2001:db8::/32', 'documentation'),
  range('2002::/16', '6to4'),
  range('fc00::/7', 'unique-local'),
  range('fe80::/10', 'link-local'),
  range('fec0::/10', 'site-local'),
  range('ff00::/8', 'multicast'),
];

const IPV4_MAPPED = range('::ffff:0:0/96', 'IPv4-mapped');
const GLOBAL_UNICAST_V6 = range('2000::/3', 'global unicast');

/** The IPv4 address an IPv4-mapped IPv6 address carries (`::ffff:7f00:1` → `127.0.0.1`). */
function embeddedIpv4(address: string): string {
  // The URL parser serialises every form (`::ffff:127.0.0.1`, `0:0:0:0:0:ffff:7f00:1`) as `::ffff:hhhh:hhhh`.
  const groups = new URL(`http://[${address}]/`).hostname.slice(1, -1).split(':').slice(-2);
  const [high, low] = groups.map((g) => parseInt(g, 16)) as [number, number];
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/**
 * Why an address is not public (e.g. `10.1.2.3 (private 10.0.0.0/8)`), or
 * `undefined` when it is a public unicast address. IPv4-mapped IPv6 addresses
 * are judged by the IPv4 address they carry.
 */
export function addressRefusal(input: string): string | undefined {
  const address = bareAddress(input);
  const family = isIP(address);
  if (family === 0) return `${input} (not an IP address)`;
  if (family === 4) {
    const hit = BLOCKED_IPV4.find((r) => r.list.check(address, 'ipv4'));
    return hit === undefined ? undefined : `${input} (${hit.label} ${hit.text})`;
  }
  if (IPV4_MAPPED.list.check(address, 'ipv6')) {
    const inner = addressRefusal(embeddedIpv4(address));
    return inner === undefined ? undefined : `${input} (IPv4-mapped ${inner})`;
  }
  const hit = BLOCKED_IPV6.find((r) => r.list.check(address, 'ipv6'));
  if (hit !== undefined) return `${input} (${hit.label} ${hit.text})`;
  if (!GLOBAL_UNICAST_V6.list.check(address, 'ipv6')) return `${input} (not global unicast 2000::/3)`;
  return undefined;
}

/** True when `address` is a public unicast IPv4 or IPv6 address. */
export function isPublicAddress(address: string): boolean {
  return addressRefusal(address) === undefined;
}

/** An IP literal without brackets or zone id (`[fe80::1%eth0]` → `fe80::1`). */
function bareAddress(input: string): string {
  const address = input.startsWith('[') && input.endsWith(']') ? input.slice(1, -1) : input;
  const zone = address.indexOf('%');
  return zone === -1 ? address : address.slice(0, zone);
}
