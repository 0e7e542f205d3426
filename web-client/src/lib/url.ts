/** URL helpers for a coordinator that may live under a path prefix. */

/**
 * `path` (starting with `/`) under `baseUrl`, keeping any path prefix of the
 * base: `joinUrl('https://x/mana-ai/', '/v1/ws')` → `https://x/mana-ai/v1/ws`.
 */
export function joinUrl(baseUrl: string, path: string): string {
  const url = new URL(baseUrl);
  url.pathname = url.pathname.replace(/\/+$/, '') + (path.startsWith('/') ? path : `/${path}`);
  url.search = '';
  url.hash = '';
  return url.toString();
}

/** The `ws://`/`wss://` URL of the coordinator's socket for an http(s) base URL. */
export function webSocketUrl(baseUrl: string, path = '/v1/ws'): string {
  const url = new URL(joinUrl(baseUrl, path));
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}
