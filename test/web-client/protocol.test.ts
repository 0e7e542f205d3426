import { describe, expect, it } from 'vitest';
import * as server from '../../src/nudge/protocol.js';
import * as browser from '../../web-client/src/protocol.js';

// The browser bundle copies these values instead of importing zod; keep them equal.
describe('web-client protocol constants', () => {
  it('match the server', () => {
    expect(browser.CLOSE_CODES).toEqual(server.CLOSE_CODES);
    expect(browser.AUTH_TIMEOUT_MS).toBe(server.AUTH_TIMEOUT_MS);
    expect(browser.MAX_FRAME_BYTES).toBe(server.MAX_FRAME_BYTES);
  });
});
