/**
 * End-user authentication: verifies the `Authorization: Bearer <JWT>` that
 * mana-auth issues (docs/contract.md §5; `sub` is the user id).
 *
 * Two modes, chosen by what the caller passes:
 * - `jwks`: EdDSA (Ed25519), ES256 or RS256 against mana-auth's JWKS
 *   (cache rules in `jwks-cache.ts`). `none` and every HS* are refused before
 *   any key is looked at: an HS256 token "signed" with a public key must fail.
 * - `dev`: HS256 with a shared dev secret (the dev default, no JWKS), tokens
 *   minted by `signDevToken`. Anything but HS256 is refused.
 */
import {
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
  type JWTPayload,
  type ProtectedHeaderParameters,
} from 'jose';
import type { Logger } from 'pino';
import { createJwksCache, isJwksAlgorithm, JWKS_ALGORITHMS, JwksError } from './jwks-cache.js';

export const AUTH_ERROR_CODES = [
  'missing',
  'malformed',
  'bad-signature',
  'expired',
  'not-yet-valid',
  'wrong-issuer',
  'wrong-audience',
  'unknown-key',
  'alg-not-allowed',
  'no-subject',
  'jwks-unavailable',
] as const;
export type AuthErrorCode = (typeof AUTH_ERROR_CODES)[number];

/** A refused credential. `status` is 503 when the key set cannot be had at all, else 401. */
export class AuthError extends Error {
  override readonly name = 'AuthError';
  readonly status: 401 | 503;
  constructor(
    readonly code: AuthErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.status = code === 'jwks-unavailable' ? 503 : 401;
  }
}

export interface UserAuthDeps {
  /** mana-auth's JWKS endpoint. Exactly one of `jwksUrl` / `devSecret`. */
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  /** HS256 secret for the dev mode, at least 32 bytes. */
  devSecret?: Uint8Array;
  fetch?: typeof fetch;
  /** Epoch milliseconds; drives token time checks and the JWKS cache. */
  now?: () => number;
  /** How long a fetched JWKS is trusted before a refresh. Default 10 minutes. */
  jwksTtlMs?: number;
  /** Minimum gap between refetches caused by unknown `kid`s. Default 30 s. */
  unknownKidCooldownMs?: number;
  /** After a failed refresh with keys cached, wait this long before trying again. Default 30 s. */
  jwksFailureRetryMs?: number;
  /** Abort a JWKS fetch after this long. Default 5 s. */
  jwksFetchTimeoutMs?: number;
  /** Allowed clock skew for `exp` / `nbf`. Default 30 s. */
  clockToleranceSec?: number;
  log?: Logger;
}

export interface VerifiedUser {
  userId: string;
  claims: JWTPayload;
}

export interface UserAuth {
  mode: 'jwks' | 'dev';
  /** Verifies a bare JWT (no `Bearer ` prefix). Throws `AuthError`. */
  verify(token: string): Promise<VerifiedUser>;
}

const DEV_ALGORITHM = 'HS256';
const MIN_DEV_SECRET_BYTES = 32;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function quoted(value: unknown): string {
  return value === undefined ? 'none' : JSON.stringify(value);
}

/** Translates jose's failures into our codes, saying what was expected and what came. */
function toAuthError(e: unknown, expected: { issuer?: string; audience?: string }, nowMs: number): AuthError {
  if (e instanceof AuthError) return e;
  if (e instanceof JwksError) return new AuthError(e.code, e.message, { cause: e });
  const at = new Date(nowMs).toISOString();
  if (e instanceof joseErrors.JWTExpired) {
    const exp = typeof e.payload.exp === 'number' ? new Date(e.payload.exp * 1000).toISOString() : quoted(e.payload.exp);
    return new AuthError('expired', `token expired at ${exp}; it is now ${at}`, { cause: e });
  }
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    const p = e.payload;
    switch (e.claim) {
      case 'nbf': {
        const nbf = typeof p.nbf === 'number' ? new Date(p.nbf * 1000).toISOString() : quoted(p.nbf);
        return new AuthError('not-yet-valid', `token is not valid before ${nbf}; it is now ${at}`, { cause: e });
      }
      case 'iss':
        return new AuthError('wrong-issuer', `expected issuer ${quoted(expected.issuer)}, token has ${quoted(p.iss)}`, {
          cause: e,
        });
      case 'aud':
        return new AuthError(
          'wrong-audience',
          `expected audience ${quoted(expected.audience)}, token has ${quoted(p.aud)}`,
          { cause: e },
        );
      case 'exp':
        return new AuthError('malformed', `token needs a numeric "exp" claim, got ${quoted(p.exp)}`, { cause: e });
      default:
        return new AuthError('malformed', `token claim "${e.claim}" is invalid: ${e.message}`, { cause: e });
    }
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new AuthError('bad-signature', 'token signature does not verify against the expected key', { cause: e });
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) {
    return new AuthError('alg-not-allowed', e.message, { cause: e });
  }
  const detail = e instanceof Error ? e.message : String(e);
  return new AuthError('malformed', `token could not be verified: ${detail}`, { cause: e });
}

function readHeader(token: string): ProtectedHeaderParameters {
  if (token === '') throw new AuthError('missing', 'expected a JWT, got an empty string');
  if (!JWT_SHAPE.test(token)) {
    throw new AuthError('malformed', `expected a JWT of three base64url parts, got ${token.split('.').length} part(s)`);
  }
  try {
    return decodeProtectedHeader(token);
  } catch (e: unknown) {
    throw new AuthError('malformed', 'token header is not base64url-encoded JSON', { cause: e });
  }
}

/**
 * Builds the verifier. Exactly one of `jwksUrl` (production) or `devSecret`
 * (dev default) must be given; anything else throws here, at start-up.
 */
export function createUserAuth(deps: UserAuthDeps): UserAuth {
  const { jwksUrl, devSecret, issuer, audience } = deps;
  if ((jwksUrl === undefined) === (devSecret === undefined)) {
    throw new Error('createUserAuth: give exactly one of jwksUrl (JWKS mode) or devSecret (dev mode)');
  }
  const now = deps.now ?? Date.now;
  const clockTolerance = deps.clockToleranceSec ?? 30;
  const expected = { issuer, audience };

  let keyFor: (header: ProtectedHeaderParameters) => Promise<CryptoKey | Uint8Array>;
  let allowed: readonly string[];

  if (jwksUrl !== undefined) {
    const parsed = URL.canParse(jwksUrl) ? new URL(jwksUrl) : null;
    if (parsed === null || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')) {
      throw new Error(`createUserAuth: jwksUrl must be an http(s) URL, got ${JSON.stringify(jwksUrl)}`);
    }
    const cache = createJwksCache({
      url: jwksUrl,
      fetch: deps.fetch ?? globalThis.fetch,
      now,
      ttlMs: deps.jwksTtlMs ?? 10 * 60_000,
      unknownKidCooldownMs: deps.unknownKidCooldownMs ?? 30_000,
      failureRetryMs: deps.jwksFailureRetryMs ?? 30_000,
      fetchTimeoutMs: deps.jwksFetchTimeoutMs ?? 5_000,
      log: deps.log,
    });
    allowed = JWKS_ALGORITHMS;
    keyFor = (header) => {
      // Checked by the caller too; narrowing here keeps the cache's types honest.
      if (!isJwksAlgorithm(header.alg)) throw new AuthError('alg-not-allowed', `alg ${quoted(header.alg)}`);
      return cache.keyFor(header.alg, header.kid);
    };
  } else {
    const secret = devSecret!;
    if (secret.byteLength < MIN_DEV_SECRET_BYTES) {
      throw new Error(`createUserAuth: devSecret must be at least ${MIN_DEV_SECRET_BYTES} bytes, got ${secret.byteLength}`);
    }
    allowed = [DEV_ALGORITHM];
    keyFor = () => Promise.resolve(secret);
  }

  return {
    mode: jwksUrl !== undefined ? 'jwks' : 'dev',
    verify: async function verify(token: string): Promise<VerifiedUser> {
      if (typeof token !== 'string') throw new AuthError('missing', 'expected a JWT string, got none');
      try {
        const header = readHeader(token);
        if (typeof header.alg !== 'string' || !allowed.includes(header.alg)) {
          throw new AuthError('alg-not-allowed', `expected alg ${allowed.join(' | ')}, token says ${quoted(header.alg)}`);
        }
        const key = await keyFor(header);
        const { payload } = await jwtVerify(token, key, {
          algorithms: [header.alg],
          issuer,
          audience,
          clockTolerance,
          currentDate: new Date(now()),
          requiredClaims: ['exp'],
        });
        if (typeof payload.sub !== 'string' || payload.sub === '') {
          throw new AuthError('no-subject', `expected a non-empty string "sub" (the user id), got ${quoted(payload.sub)}`);
        }
        return { userId: payload.sub, claims: payload };
      } catch (e: unknown) {
        throw toAuthError(e, expected, now());
      }
    },
  };
}

/**
 * Mints an HS256 token for the dev mode (`POST /dev/token`). `opts.now` is for
 * tests (epoch ms).
 */
export async function signDevToken(
  secret: Uint8Array,
  userId: string,
  ttlSec: number = 12 * 3600,
  opts: { issuer?: string; audience?: string; now?: () => number } = {},
): Promise<string> {
  if (userId === '') throw new Error('signDevToken: userId must be non-empty');
  const iat = Math.floor((opts.now ?? Date.now)() / 1000);
  let jwt = new SignJWT({})
    .setProtectedHeader({ alg: DEV_ALGORITHM, typ: 'JWT' })
    .setSubject(userId)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttlSec);
  if (opts.issuer !== undefined) jwt = jwt.setIssuer(opts.issuer);
  if (opts.audience !== undefined) jwt = jwt.setAudience(opts.audience);
  return jwt.sign(secret);
}

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** Extracts the token from `Authorization: Bearer <token>`. Throws `AuthError` 'missing' / 'malformed'. */
export function bearerToken(authorizationHeader: string | undefined): string {
  if (authorizationHeader === undefined || authorizationHeader.trim() === '') {
    throw new AuthError('missing', 'expected an Authorization header "Bearer <token>", got none');
  }
  const match = BEARER.exec(authorizationHeader);
  if (!match) {
    const scheme = authorizationHeader.trim().split(/\s+/)[0] ?? '';
    // Never echo the value itself: without a scheme it may be the credential.
    const got = /^bearer$/i.test(scheme)
      ? 'a Bearer header without a usable token'
      : /^[A-Za-z][A-Za-z0-9-]{0,19}$/.test(scheme) && /\s/.test(authorizationHeader.trim())
        ? `scheme "${scheme}"`
        : 'a value without a scheme';
    throw new AuthError('malformed', `expected an Authorization header "Bearer <token>", got ${got}`);
  }
  return match[1]!;
}
