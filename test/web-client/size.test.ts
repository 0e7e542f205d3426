/**
 * The browser module's download stays within its budget: what a tab loads
 * (`index.js` and its chunks) and what a service worker loads (`sw.js` and
 * its chunks), gzipped, as built from the current sources. Byte counts, not
 * timings: the same sources always give the same answer.
 */
import { describe, expect, it } from 'vitest';
import { measureWebClient, SIZE_BUDGET_GZIP } from '../bench/web-client-size.js';

describe('web-client size', () => {
  it('keeps what a tab and a service worker load within the gzipped budget', async () => {
    const size = await measureWebClient();
    // The walk follows the chunks: an entry alone would under-count.
    expect(size.shipped.tab.files[0]).toBe('index.js');
    expect(size.shipped.tab.files.length).toBeGreaterThan(1);
    expect(size.shipped.sw.files[0]).toBe('sw.js');
    expect(size.shipped.sw.files.length).toBeGreaterThan(1);
    expect(size.shipped.tab.gzipBytes).toBeLessThan(size.shipped.tab.bytes);
    expect(size.minified.tab.bytes).toBeLessThan(size.shipped.tab.bytes);
    expect(size.shipped.tab.gzipBytes).toBeLessThanOrEqual(SIZE_BUDGET_GZIP.tab);
    expect(size.shipped.sw.gzipBytes).toBeLessThanOrEqual(SIZE_BUDGET_GZIP.sw);
  });
});
