/** URL helpers for a coordinator that may live under a path prefix. */

/**
 * `path` (starting with `/`) under `baseUrl`, keeping any path prefix of the
 * base: `joinUrl('https://x/mana-ai/', '/v1/ws')` → `https://x/mana-ai/v1/ws`; a query in `path` is kept.
 */
export function joinUrl(baseUrl: string, path: string): string {
  const url = new URL(baseUrl);
  // A query in `path` stays a query: set as the pathname, its `?` would be escaped into the path.
  const [p = '', query] = path.split('?', 2);
  url.pathname = url.pathname.replace(/\/+$/, '') + (p.startsWith('/') ? p : `/${p}`);
  url.search = query ? `?${query}` : '';
  url.hash = '';
  return url.toString();
}

/** The `ws://`/`wss://` URL of the coordinator's socket for an http(s) base URL. */
export function webSocketUrl(baseUrl: string, path = '/v1/ws'): string {
  const url = new URL(joinUrl(baseUrl, path));
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}
