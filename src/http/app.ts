/**
 * The Hono app: request logging, body limits, error mapping, and the route
 * groups passed in by the caller. Knows nothing about process.env.
 */
import { OpenAPIHono, type Hook } from '@hono/zod-openapi';
import type { Env } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { HTTPException } from 'hono/http-exception';
import type { Logger } from '../log.js';
import { AppError, clientValueProblem, errorBody } from './errors.js';

export const MAX_BODY_BYTES = 64 * 1024;

export type Mount = (app: OpenAPIHono) => void;

/** zod failures at the boundary become 400s that say what was expected and what came. */
export const validationHook: Hook<unknown, Env, string, unknown> = (result, c) => {
  if (!result.success) {
    const message = result.error.issues.map((i) => `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`).join('; ');
    return c.json(errorBody('invalid_request', message), 400);
  }
  return undefined;
};

/** A sub-app for a route group, with the same validation errors as the root. */
export function createRouteGroup<E extends Env = Env>(): OpenAPIHono<E> {
  return new OpenAPIHono<E>({ defaultHook: validationHook as unknown as Hook<unknown, E, string, unknown> });
}

export interface AppDeps {
  log: Logger;
  version: string;
  mounts: Mount[];
  corsOrigins?: string[];
  /** Called for every refused credential (401, or 503 when the key set is unavailable), with its code. */
  onAuthRefused?: (code: string) => void;
}

export function createApp(deps: AppDeps): OpenAPIHono {
  const log = deps.log.child({ component: 'http' });
  const app = new OpenAPIHono({ defaultHook: validationHook });

  app.use('*', async function requestLog(c, next) {
    const started = performance.now();
    await next();
    log.info(
      { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round((performance.now() - started) * 10) / 10 },
      'request',
    );
  });

  app.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => c.json(errorBody('body_too_large', `expected a body of at most ${MAX_BODY_BYTES} bytes`), 413),
    }),
  );

  if (deps.corsOrigins && deps.corsOrigins.length > 0) {
    // A webapp on another origin calls the user routes with a bearer token (no cookies).
    const origins = deps.corsOrigins;
    const policy = cors({
      origin: origins.includes('*') ? '*' : origins,
      allowHeaders: ['Authorization', 'Content-Type'],
      allowMethods: ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'],
      maxAge: 600,
    });
    app.use('/v1/*', policy);
    app.use('/dev/*', policy);
  }

  app.onError((err, c) => {
    if (err instanceof AppError) {
      if (err.status === 401 || err.code === 'jwks-unavailable') deps.onAuthRefused?.(err.code);
      for (const [k, v] of Object.entries(err.headers ?? {})) c.header(k, v);
      return c.json(errorBody(err.code, err.message), err.status);
    }
    // Malformed JSON bodies surface as SyntaxError from c.req.json(), or as Hono's
    // own 400 from the validator (an empty or unparsable body on a JSON route).
    if (err instanceof SyntaxError) return c.json(errorBody('invalid_json', `expected a JSON body: ${err.message}`), 400);
    if (err instanceof HTTPException && err.status < 500) {
      const code = /json/i.test(err.message) ? 'invalid_json' : 'invalid_request';
      return c.json(errorBody(code, code === 'invalid_json' ? `expected a JSON body: ${err.message}` : err.message), err.status);
    }
    const problem = clientValueProblem(err);
    if (problem) {
      log.info({ code: (err as { code?: string }).code, path: c.req.path }, 'request refused by the database');
      return c.json(errorBody('invalid_value', `the request holds ${problem}`), 400);
    }
    log.error({ err, path: c.req.path }, 'unhandled error');
    return c.json(errorBody('internal', 'internal error'), 500);
  });

  app.notFound((c) => c.json(errorBody('not_found', `no route for ${c.req.method} ${c.req.path}`), 404));

  for (const mount of deps.mounts) mount(app);

  app.doc31('/openapi.json', { openapi: '3.1.0', info: { title: 'mana-ai coordinator', version: deps.version } });
  return app;
}
