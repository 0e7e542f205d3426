/**
 * The line `npm start` ends with: where to go now. A wildcard bind address
 * (0.0.0.0, ::) is not something a browser can open, so it becomes
 * localhost; any other host is shown as configured.
 */
const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', '']);

export interface StartBanner {
  url: string;
  message: string;
}

export function startBanner(opts: { host: string; port: number; devDefaults: boolean }): StartBanner {
  const host = WILDCARDS.has(opts.host) ? 'localhost' : opts.host.includes(':') && !opts.host.startsWith('[') ? `[${opts.host}]` : opts.host;
  const base = `http://${host}:${opts.port}`;
  if (opts.devDefaults) {
    const url = `${base}/demo`;
    return { url, message: `ready: open ${url} to try the demo` };
  }
  return { url: base, message: `ready on ${base} (health: ${base}/health)` };
}
