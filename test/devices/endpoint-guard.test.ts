import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addressRefusal,
  allowlistEntryOf,
  checkPushEndpoint,
  createCachingResolver,
  createGuardedLookup,
  DEFAULT_PUSH_ALLOWLIST,
  parseAllowlist,
  type Resolve,
} from '../../src/devices/endpoint-guard.js';

/** Wildcard patterns, to test how patterns match (the defaults name exact hosts; see below). */
const defaults = parseAllowlist('*.googleapis.com,*.push.services.mozilla.com,*.notify.windows.com,*.push.apple.com');
const fixed = (map: Record<string, string[]>): Resolve & { calls: string[] } => {
  const calls: string[] = [];
  const fn = async (host: string) => {
    calls.push(host);
    const found = map[host];
    if (found === undefined) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return found;
  };
  return Object.assign(fn, { calls });
};
const PUBLIC = ['142.250.185.74', '2a00:1450:4001:82b::200a'];

describe('parseAllowlist', () => {
  it('reads host patterns, exact hosts and exact origins', () => {
    const a = parseAllowlist(' *.googleapis.com, web.push.apple.com ,http://127.0.0.1:8090,https://localhost:9443,');
    expect([...a.origins]).toEqual(['http://127.0.0.1:8090', 'https://localhost:9443']);
    expect([...a.hosts]).toEqual(['web.push.apple.com']);
    expect(a.suffixes).toEqual(['.googleapis.com']);
  });

  it('normalises a default port away so the origin compares equal', () => {
    expect([...parseAllowlist('https://localhost:443').origins]).toEqual(['https://localhost']);
  });

  it.each(['*.', 'goo gle.com', 'a.*.com', 'ftp://x.example', 'http://127.0.0.1:8090/path', 'https://u:p@x.example', 'http://'])(
    'refuses the unreadable entry %s loudly',
    (entry) => {
      expect(() => parseAllowlist(entry)).toThrow(/push allowlist: expected/);
    },
  );
});

describe('the default allowlist', () => {
  const real = parseAllowlist(DEFAULT_PUSH_ALLOWLIST);
  it.each([
    'https://fcm.googleapis.com/fcm/send/abc',
    'https://updates.push.services.mozilla.com/wpush/v2/abc',
    'https://web.push.apple.com/QGx-abc',
    'https://wns2-par02p.notify.windows.com/w/?token=abc',
  ])('accepts the real push service endpoint %s', async (endpoint) => {
    const resolve = async () => PUBLIC;
    expect((await checkPushEndpoint(endpoint, real, { resolve })).ok).toBe(true);
  });

  it.each([
    'https://storage.googleapis.com/bucket/x',
    'https://a.b.googleapis.com/x',
    'https://other.push.services.mozilla.com/x',
    'https://api.push.apple.com/x',
  ])('refuses %s: another service on the same domain is not a push service', async (endpoint) => {
    const resolve = async () => PUBLIC;
    expect(await checkPushEndpoint(endpoint, real, { resolve })).toEqual({ ok: false, reason: expect.stringContaining('expected a host matching the push allowlist') });
  });

  it('names the matching entry, so per-origin state is bounded by the allowlist', () => {
    expect(allowlistEntryOf(new URL('https://wns2-par02p.notify.windows.com/w/'), real)).toBe('*.notify.windows.com');
    expect(allowlistEntryOf(new URL('https://FCM.googleapis.com./x'), real)).toBe('fcm.googleapis.com');
    expect(allowlistEntryOf(new URL('https://evil.example/x'), real)).toBeUndefined();
    expect(allowlistEntryOf(new URL('http://127.0.0.1:8090/p'), parseAllowlist('http://127.0.0.1:8090'))).toBe('http://127.0.0.1:8090');
  });
});

describe('checkPushEndpoint', () => {
  it('accepts an https endpoint on a listed subdomain that resolves to public addresses', async () => {
    const resolve = fixed({ 'fcm.googleapis.com': PUBLIC });
    const r = await checkPushEndpoint('https://fcm.googleapis.com/fcm/send/abc', defaults, { resolve });
    expect(r).toMatchObject({ ok: true, pinnedAddress: PUBLIC[0] });
    expect(resolve.calls).toEqual(['fcm.googleapis.com']);
  });

  it('matches any depth of subdomain but not the bare domain or a look-alike', async () => {
    const resolve = fixed({ 'a.b.googleapis.com': PUBLIC, 'googleapis.com': PUBLIC, 'evilgoogleapis.com': PUBLIC });
    expect((await checkPushEndpoint('https://a.b.googleapis.com/x', defaults, { resolve })).ok).toBe(true);
    const bare = await checkPushEndpoint('https://googleapis.com/x', defaults, { resolve });
    expect(bare).toEqual({ ok: false, reason: expect.stringContaining('got googleapis.com') });
    expect((await checkPushEndpoint('https://evilgoogleapis.com/x', defaults, { resolve })).ok).toBe(false);
  });

  it('matches host names case-insensitively and with a trailing dot', async () => {
    const resolve = fixed({ 'fcm.googleapis.com': PUBLIC });
    expect((await checkPushEndpoint('https://FCM.GoogleAPIs.com./x', defaults, { resolve })).ok).toBe(true);
  });

  it('says what was expected and what came, without the path', async () => {
    const resolve = fixed({});
    const cases: [string, RegExp][] = [
      ['http://fcm.googleapis.com/secret-path', /expected an https: endpoint, got http:/],
      ['https://evil.example/secret-path', /expected a host matching the push allowlist \(\*\.googleapis\.com, .*\), got evil\.example/],
      ['https://user:pw@fcm.googleapis.com/secret-path', /expected an endpoint without user info/],
      ['https://fcm.googleapis.com:8443/secret-path', /expected the default https port, got port 8443/],
      ['not a url', /expected an absolute URL/],
      ['https://nx.googleapis.com/secret-path', /expected nx\.googleapis\.com to resolve, got ENOTFOUND/],
    ];
    for (const [endpoint, reason] of cases) {
      const r = await checkPushEndpoint(endpoint, defaults, { resolve });
      expect(r.ok, endpoint).toBe(false);
      if (!r.ok) {
        expect(r.reason).toMatch(reason);
        expect(r.reason).not.toContain('secret-path');
      }
    }
  });

  it.each([
    ['10.1.2.3', /private 10\.0\.0\.0\/8/],
    ['172.20.0.1', /private 172\.16\.0\.0\/12/],
    ['192.168.1.1', /private 192\.168/],
    ['127.0.0.1', /loopback/],
    ['169.254.169.254', /link-local/],
    ['100.100.100.200', /CGNAT 100\.64\.0\.0\/10/],
    ['0.0.0.0', /unspecified/],
    ['224.0.0.1', /multicast/],
    ['::1', /loopback/],
    ['::', /unspecified/],
    ['fe80::1', /link-local fe80::\/10/],
    ['fd12:3456::1', /unique-local fc00::\/7/],
    ['ff02::1', /multicast/],
    ['64:ff9b::a00:1', /NAT64 64:ff9b::\/96/],
    ['2002:a00:1::1', /6to4 2002::\/16/],
    ['::ffff:10.0.0.1', /IPv4-mapped 10\.0\.0\.1 \(private/],
    ['::ffff:7f00:1', /IPv4-mapped 127\.0\.0\.1 \(loopback/],
  ])('refuses a host that resolves to %s', async (address, label) => {
    const resolve = fixed({ 'push.googleapis.com': [address] });
    const r = await checkPushEndpoint('https://push.googleapis.com/x', defaults, { resolve });
    expect(r).toEqual({ ok: false, reason: expect.stringMatching(label) });
    if (!r.ok) expect(r.reason).toMatch(/^expected every address of push\.googleapis\.com to be public, got /);
  });

  it('refuses when ANY resolved address is not public, not just the first', async () => {
    const resolve = fixed({ 'push.googleapis.com': [...PUBLIC, '10.0.0.1'] });
    expect((await checkPushEndpoint('https://push.googleapis.com/x', defaults, { resolve })).ok).toBe(false);
  });

  it('checks IP-literal hosts the same way, without resolving', async () => {
    const resolve = fixed({});
    const list = parseAllowlist('127.0.0.1,8.8.8.8,::1,2606:4700:0::1111');
    expect(await checkPushEndpoint('https://127.0.0.1/x', list, { resolve })).toEqual({
      ok: false,
      reason: 'expected a public address, got 127.0.0.1 (loopback 127.0.0.0/8)',
    });
    expect(await checkPushEndpoint('https://0x7f.1/x', list, { resolve })).toMatchObject({ ok: false });
    expect(await checkPushEndpoint('https://8.8.8.8/x', list, { resolve })).toMatchObject({ ok: true, pinnedAddress: '8.8.8.8' });
    expect(await checkPushEndpoint('https://[::1]/x', list, { resolve })).toMatchObject({ ok: false, reason: expect.stringMatching(/loopback/) });
    expect(await checkPushEndpoint('https://[::ffff:127.0.0.1]/x', parseAllowlist('::ffff:127.0.0.1'), { resolve })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/IPv4-mapped 127\.0\.0\.1/),
    });
    expect(await checkPushEndpoint('https://[2606:4700::1111]/x', list, { resolve })).toMatchObject({ ok: true, pinnedAddress: '2606:4700::1111' });
    expect(resolve.calls).toEqual([]);
  });

  it('allows an exact-origin entry as-is, loopback and http included, and nothing next to it', async () => {
    const resolve = fixed({});
    const list = parseAllowlist(`${DEFAULT_PUSH_ALLOWLIST},http://127.0.0.1:8090,https://localhost:9443`);
    expect(await checkPushEndpoint('http://127.0.0.1:8090/notify/abc', list, { resolve })).toMatchObject({ ok: true });
    expect(await checkPushEndpoint('https://localhost:9443/p', list, { resolve })).toMatchObject({ ok: true });
    expect((await checkPushEndpoint('http://127.0.0.1:8091/notify/abc', list, { resolve })).ok).toBe(false);
    expect((await checkPushEndpoint('https://127.0.0.1:8090/notify/abc', list, { resolve })).ok).toBe(false);
    expect((await checkPushEndpoint('http://localhost:9443/p', list, { resolve })).ok).toBe(false);
    expect((await checkPushEndpoint('http://u:p@127.0.0.1:8090/notify/abc', list, { resolve })).ok).toBe(false);
    expect(resolve.calls).toEqual([]);
  });

  it('property: every IPv4 in a private range, plain or IPv4-mapped, is refused', () => {
    const privateV4 = fc.oneof(
      fc.tuple(fc.constant(10), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(172), fc.integer({ min: 16, max: 31 }), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(192), fc.constant(168), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(127), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(100), fc.integer({ min: 64, max: 127 }), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(169), fc.constant(254), fc.nat(255), fc.nat(255)),
    );
    fc.assert(
      fc.property(privateV4, (octets) => {
        const v4 = octets.join('.');
        const hex = (a: number, b: number) => ((a << 8) | b).toString(16);
        const mapped = `::ffff:${hex(octets[0], octets[1])}:${hex(octets[2], octets[3])}`;
        return addressRefusal(v4) !== undefined && addressRefusal(`::ffff:${v4}`) !== undefined && addressRefusal(mapped) !== undefined;
      }),
    );
  });

  it('accepts ordinary public addresses of both families', () => {
    for (const a of ['8.8.8.8', '142.250.185.74', '17.253.144.10', '2a00:1450:4001:82b::200a', '2620:0:2d0:200::7', '::ffff:8.8.8.8']) {
      expect(addressRefusal(a), a).toBeUndefined();
    }
  });
});

describe('createCachingResolver', () => {
  it('asks once per host within the TTL, again after it', async () => {
    let t = 0;
    const inner = fixed({ 'a.googleapis.com': PUBLIC });
    const resolve = createCachingResolver(inner, { ttlMs: 60_000, now: () => t });
    await Promise.all([resolve('a.googleapis.com'), resolve('a.googleapis.com')]);
    await resolve('a.googleapis.com');
    expect(inner.calls).toHaveLength(1);
    t = 60_001;
    await resolve('a.googleapis.com');
    expect(inner.calls).toHaveLength(2);
  });
});

describe('createGuardedLookup (connect-time pin)', () => {
  const run = (resolve: Resolve, all: boolean) =>
    new Promise<{ err: NodeJS.ErrnoException | null; result: unknown }>((done) => {
      createGuardedLookup(resolve)('push.googleapis.com', { all }, (err, address, family) =>
        done({ err, result: all ? address : { address, family } }),
      );
    });

  it('hands public addresses to the socket (single and all forms)', async () => {
    const resolve = fixed({ 'push.googleapis.com': PUBLIC });
    expect(await run(resolve, false)).toEqual({ err: null, result: { address: PUBLIC[0], family: 4 } });
    expect((await run(resolve, true)).result).toEqual([
      { address: PUBLIC[0], family: 4 },
      { address: PUBLIC[1], family: 6 },
    ]);
  });

  it('fails the connect when DNS now answers a private address (rebinding)', async () => {
    const { err } = await run(fixed({ 'push.googleapis.com': ['192.168.0.10'] }), true);
    expect(err?.code).toBe('EPUSHREFUSED');
  });
});
