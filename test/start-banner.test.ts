import { describe, expect, it } from 'vitest';
import { startBanner } from '../src/start-banner.js';

describe('startBanner', () => {
  it('points a dev start at the demo on localhost when bound to every interface', () => {
    expect(startBanner({ host: '0.0.0.0', port: 3066, devDefaults: true })).toEqual({
      url: 'http://localhost:3066/demo',
      message: 'ready: open http://localhost:3066/demo to try the demo',
    });
    expect(startBanner({ host: '::', port: 4000, devDefaults: true }).url).toBe('http://localhost:4000/demo');
  });

  it('shows a configured host as it is, bracketing IPv6 literals', () => {
    expect(startBanner({ host: '127.0.0.1', port: 3066, devDefaults: true }).url).toBe('http://127.0.0.1:3066/demo');
    expect(startBanner({ host: '::1', port: 3066, devDefaults: true }).url).toBe('http://[::1]:3066/demo');
  });

  it('names no demo when the dev routes are off', () => {
    const b = startBanner({ host: '0.0.0.0', port: 3066, devDefaults: false });
    expect(b.url).toBe('http://localhost:3066');
    expect(b.message).not.toContain('/demo');
    expect(b.message).toContain('/health');
  });
});
