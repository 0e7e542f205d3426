/**
 * The coordinator's HTTP API as the browser and the service worker call it:
 * Bearer token from `getToken` (time-boxed: a hung token source must not
 * hang a push event), JSON in and out, a timeout on every call.
 */
import { base64UrlToBytes } from './base64url.js';
import { parseJson } from './nudge.js';
import { withTimeout } from './timeout.js';
import { joinUrl } from './url.js';

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface ApiDeps {
  baseUrl: string;
  getToken?: () => Promise<string>;
  fetch?: FetchLike;
  /** Per-request timeout (default 15 s). */
  timeoutMs?: number;
  /** How long `getToken` may take (default 10 s). */
  tokenTimeoutMs?: number;
  /** Told when no usable token could be had: getToken failed or timed out, or the server answered 401. */
  onAuthLost?: (reason: string) => void;
}

export interface ApiResponse<T = unknown> {
  status: number;
  ok: boolean;
  /** Parsed JSON body, or `undefined` for an empty or non-JSON body. */
  body: T | undefined;
}

/** An HTTP answer we did not expect; `status` 0 means the request never got one. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(message: string, status: number, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * An answer to `what` we did not expect, as an ApiError with the code and
 * message of the coordinator's `{ error: { code, message } }` when it sent one.
 */
export function unexpected(what: string, res: ApiResponse): ApiError {
  const body = (res.body as { error?: unknown } | undefined)?.error;
  const error = typeof body === 'object' && body !== null ? (body as { code?: unknown; message?: unknown }) : undefined;
  const code = !error ? `http_${res.status}` : typeof error.code === 'string' ? error.code : 'unknown';
  const detail = error ? ` ${code}: ${typeof error.message === 'string' ? error.message : ''}` : '';
  return new ApiError(`${what}: ${res.status}${detail}`, res.status, code);
}

/** The claims of a JWT, unverified (only to key local records and to refresh early); undefined when it is not one. */
export function jwtClaims(token: string): { sub?: unknown; exp?: unknown } | undefined {
  try {
    return JSON.parse(new TextDecoder().decode(base64UrlToBytes(token.split('.')[1]!))) as { sub?: unknown; exp?: unknown };
  } catch {
    return undefined;
  }
}

export interface Api {
  /** The user of the last token getToken gave (its `sub`), if it was a JWT. */
  user(): string | undefined;
  /** Any status is returned; only a network failure or timeout throws (ApiError, status 0). */
  request<T = unknown>(method: string, path: string, body?: unknown, options?: { auth?: boolean }): Promise<ApiResponse<T>>;
  /** Like request, but a non-2xx status throws an ApiError with the server's error code. */
  json<T = unknown>(method: string, path: string, body?: unknown, options?: { auth?: boolean }): Promise<T>;
}

export function createApi(deps: ApiDeps): Api {
  const doFetch: FetchLike = deps.fetch ?? ((input, init) => fetch(input, init));
  const timeoutMs = deps.timeoutMs ?? 15_000;
  const tokenTimeoutMs = deps.tokenTimeoutMs ?? 10_000;
  let user: string | undefined;

  async function token(getToken: () => Promise<string>): Promise<string> {
    try {
      const t = await withTimeout(Promise.resolve().then(getToken), tokenTimeoutMs, `getToken did not answer within ${tokenTimeoutMs} ms`);
      const sub = jwtClaims(t)?.sub;
      if (typeof sub === 'string') user = sub;
      return t;
    } catch (e: unknown) {
      deps.onAuthLost?.('no token');
      throw new ApiError('no token: getToken failed', 0, 'no_token', { cause: e });
    }
  }

  async function request<T>(method: string, path: string, body?: unknown, options: { auth?: boolean } = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (options.auth !== false && deps.getToken) headers['authorization'] = `Bearer ${await token(deps.getToken)}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let res: Response;
    try {
      res = await doFetch(joinUrl(deps.baseUrl, path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        // A wake-up must reach this coordinator, never a cached copy.
        cache: 'no-store',
      });
    } catch (e: unknown) {
      const reason = controller.signal.aborted ? `timed out after ${timeoutMs} ms` : 'network error';
      throw new ApiError(`${method} ${path}: ${reason}`, 0, controller.signal.aborted ? 'timeout' : 'network', { cause: e });
    } finally {
      clearTimeout(timer);
    }
    const text = await res.text().catch(() => '');
    if (res.status === 401 && options.auth !== false) deps.onAuthLost?.('token refused');
    return { status: res.status, ok: res.ok, body: parseJson(text) as T | undefined };
  }

  async function json<T>(method: string, path: string, body?: unknown, options?: { auth?: boolean }): Promise<T> {
    const res = await request<T>(method, path, body, options);
    if (!res.ok) throw unexpected(`${method} ${path}`, res);
    return res.body as T;
  }

  return { user: () => user, request, json };
}
