/**
 * Which address a request is counted under (client-address.ts): the socket's
 * unless TRUST_PROXY says which X-Forwarded-For hops to believe; entries a
 * caller writes itself never count for more than a trusted proxy appended.
 */
import { describe, expect, it } from 'vitest';
import { clientAddress, parseTrustProxy, type TrustProxy } from '../../src/http/client-address.js';

const trust = (v: string): TrustProxy => {
  const t = parseTrustProxy(v);
  if (typeof t === 'string') throw new Error(t);
  return t;
};

describe('parseTrustProxy', () => {
  it('reads off, a hop count, or addresses and CIDR ranges; refuses anything else with what it expected', () => {
    for (const off of [undefined, '', 'false', '0']) expect(parseTrustProxy(off)).toEqual({ kind: 'none' });
    expect(parseTrustProxy('2')).toEqual({ kind: 'hops', hops: 2 });
    expect(parseTrustProxy('10.0.0.0/8, 192.168.1.4,fd00::/8')).toMatchObject({ kind: 'list', entries: ['10.0.0.0/8', '192.168.1.4', 'fd00::/8'] });
    for (const bad of ['true', '11', 'proxy.internal', '10.0.0.0/33', '10.0.0.0/8/1', '::1/129', '10.0.0.0/x']) {
      expect(parseTrustProxy(bad), bad).toEqual(expect.stringMatching(/^expected /));
    }
  });
});

describe('clientAddress', () => {
  it('without TRUST_PROXY: the socket, whatever X-Forwarded-For says', () => {
    expect(clientAddress('10.0.0.5', '203.0.113.7', { kind: 'none' })).toBe('10.0.0.5');
    expect(clientAddress('::ffff:127.0.0.1', undefined, { kind: 'none' })).toBe('127.0.0.1');
    expect(clientAddress(undefined, undefined, { kind: 'none' })).toBe('unknown');
  });

  it('a hop count: that many proxies are skipped from the right', () => {
    expect(clientAddress('10.0.0.5', '203.0.113.7', trust('1'))).toBe('203.0.113.7');
    // The caller's own entry sits left of what the proxy appended.
    expect(clientAddress('10.0.0.5', '198.51.100.1, 203.0.113.7', trust('1'))).toBe('203.0.113.7');
    expect(clientAddress('10.0.0.5', '203.0.113.7, 10.0.0.9', trust('2'))).toBe('203.0.113.7');
    // Fewer hops than trusted: the leftmost there is.
    expect(clientAddress('10.0.0.5', '203.0.113.7', trust('3'))).toBe('203.0.113.7');
    expect(clientAddress('10.0.0.5', undefined, trust('1'))).toBe('10.0.0.5');
  });

  it('a list: hops are skipped while they are listed; a direct caller is its socket', () => {
    const t = trust('10.0.0.0/8, ::1');
    expect(clientAddress('10.0.0.5', '198.51.100.1, 203.0.113.7, 10.0.0.9', t)).toBe('203.0.113.7');
    expect(clientAddress('::ffff:10.0.0.5', '203.0.113.7', t)).toBe('203.0.113.7');
    expect(clientAddress('::1', '2001:db8::7', t)).toBe('2001:db8::7');
    // Not from a listed proxy: its X-Forwarded-For is the caller's own writing.
    expect(clientAddress('203.0.113.50', '10.0.0.1', t)).toBe('203.0.113.50');
    // Every hop listed: the leftmost.
    expect(clientAddress('10.0.0.5', '10.0.0.6', t)).toBe('10.0.0.6');
  });
});
