/** URL helpers for a coordinator that may live under a path prefix. */

/**
 * `path` (starting with `/`, optionally with a `?query`) under `baseUrl`,
 * keeping any path prefix of the base: `joinUrl('https://x/mana-ai/', '/v1/ws')`
 * → `https://x/mana-ai/v1/ws`. The query is split off first: assigned to
 * `pathname`, a `?` would be escaped into the path.
 */
export function joinUrl(baseUrl: string, path: string): string {
  const url = new URL(baseUrl);
  const q = path.indexOf('?');
  const pathOnly = q === -1 ? path : path.slice(0, q);
  url.pathname = url.pathname.replace(/\/+$/, '') + (pathOnly.startsWith('/') ? pathOnly : `/${pathOnly}`);
  url.search = q === -1 ? '' : path.slice(q);
  url.hash = '';
  return url.toString();
}

/** The `ws://`/`wss://` URL of the coordinator's socket for an http(s) base URL. */
export function webSocketUrl(baseUrl: string, path = '/v1/ws'): string {
  const url = new URL(joinUrl(baseUrl, path));
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}
