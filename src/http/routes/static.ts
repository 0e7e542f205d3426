/**
 * Static files: the built browser module at /web-client/dist/*, and (dev
 * default only) the demo page at /demo with its service worker at
 * /demo/sw.js (scope /demo/). Paths are resolved inside the folder; nothing
 * outside it can be read.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';

const MIME: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** web-client/ next to src/ (tsx) or next to dist/ (compiled): the first that exists. */
export function findWebClientDir(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../..', '../../../..']) {
    const dir = resolve(here, up, 'web-client');
    if (existsSync(join(dir, 'dist'))) return dir;
  }
  return undefined;
}

async function sendFile(c: Context, root: string, rel: string, headers: Record<string, string> = {}) {
  const file = normalize(join(root, rel));
  if (!file.startsWith(root + sep)) return c.json({ error: { code: 'not_found', message: 'no such file' } }, 404);
  try {
    const body = await readFile(file);
    c.header('Content-Type', MIME[extname(file)] ?? 'application/octet-stream');
    c.header('Cache-Control', 'no-cache');
    c.header('X-Content-Type-Options', 'nosniff');
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
    return c.body(body);
  } catch {
    return c.json({ error: { code: 'not_found', message: `no such file: ${rel}` } }, 404);
  }
}

export function mountStatic(app: OpenAPIHono, opts: { webClientDir: string; demo: boolean }): void {
  const dist = resolve(opts.webClientDir, 'dist');
  const demo = resolve(opts.webClientDir, 'demo');
  app.get('/web-client/dist/*', (c) => sendFile(c, dist, c.req.path.slice('/web-client/dist/'.length)));
  if (!opts.demo) return;
  app.get('/demo', (c) => sendFile(c, demo, 'index.html'));
  app.get('/demo/', (c) => sendFile(c, demo, 'index.html'));
  app.get('/demo/sw.js', (c) => sendFile(c, demo, 'sw.js', { 'Service-Worker-Allowed': '/demo/' }));
  app.get('/', (c) => c.redirect('/demo'));
}
