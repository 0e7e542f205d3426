/**
 * A JWKS key set held in memory: fetched once, refreshed after a TTL, refetched
 * when a token names an unknown `kid`. jose's `createRemoteJWKSet` is not used
 * because its policy (cooldown, failure handling) is not ours to choose; see
 * docs/architecture.md "Known pitfalls".
 *
 * Rules:
 * - one fetch in flight at a time; every caller waiting for keys shares it;
 * - unknown-`kid` refetches are rate limited (one per `unknownKidCooldownMs`),
 *   so a stream of garbage tokens cannot hammer mana-auth;
 * - a failed refresh keeps the previous keys and retries after
 *   `failureRetryMs`, not on every request;
 * - every key is bound to exactly one algorithm by its own type (OKP/Ed25519 →
 *   EdDSA, EC/P-256 → ES256, RSA → RS256); symmetric (`oct`) keys are never
 *   imported, which rules out HS* algorithm confusion at the key level too.
 */
import { importJWK, type JWK } from 'jose';
import type { Logger } from 'pino';
import { readBoundedText } from '../lib/bounded-body.js';

/** Asymmetric algorithms accepted from a JWKS. mana-auth issues EdDSA (Ed25519). */
export const JWKS_ALGORITHMS = ['EdDSA', 'ES256', 'RS256'] as const;
export type JwksAlgorithm = (typeof JWKS_ALGORITHMS)[number];

export function isJwksAlgorithm(alg: unknown): alg is JwksAlgorithm {
  return typeof alg === 'string' && (JWKS_ALGORITHMS as readonly string[]).includes(alg);
}

export type JwksErrorCode = 'unknown-key' | 'jwks-unavailable' | 'alg-not-allowed';

/** Key lookup failure; `createUserAuth` maps it to an `AuthError` of the same code. */
export class JwksError extends Error {
  override readonly name = 'JwksError';
  constructor(
    readonly code: JwksErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface JwksCacheDeps {
  url: string;
  fetch: typeof fetch;
  /** Epoch milliseconds. */
  now: () => number;
  ttlMs: number;
  unknownKidCooldownMs: number;
  failureRetryMs: number;
  fetchTimeoutMs: number;
  /** Largest JWKS response read (default {@link JWKS_MAX_BYTES}); a larger one is a failed refresh. */
  maxBytes?: number;
  log?: Logger;
}

export interface JwksCache {
  /** The verification key for a token header, fetching or refetching the set as the rules allow. */
  keyFor(alg: JwksAlgorithm, kid: string | undefined): Promise<CryptoKey>;
}

/** A JWKS of a few keys is a few KiB; anything near this is not one. */
export const JWKS_MAX_BYTES = 256 * 1024;

/** Retry gap after a failed fetch while no keys are cached yet. */
const COLD_RETRY_MS = 1_000;

interface KeyEntry {
  kid: string | undefined;
  alg: JwksAlgorithm;
  key: CryptoKey;
}

/** The one algorithm a public JWK can serve, or why it is skipped. */
function algorithmOf(jwk: JWK): JwksAlgorithm | string {
  if (jwk.use !== undefined && jwk.use !== 'sig') return `use is "${jwk.use}", not "sig"`;
  let alg: JwksAlgorithm | undefined;
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') alg = 'EdDSA';
  else if (jwk.kty === 'EC' && jwk.crv === 'P-256') alg = 'ES256';
  else if (jwk.kty === 'RSA') alg = 'RS256';
  if (alg === undefined) return `unsupported key type ${String(jwk.kty)}/${String(jwk.crv ?? '-')}`;
  // A JWK may pin its algorithm; "Ed25519" is the RFC 9864 name for the same EdDSA key.
  if (jwk.alg !== undefined && jwk.alg !== alg && !(alg === 'EdDSA' && jwk.alg === 'Ed25519')) {
    return `key says alg ${jwk.alg}, expected ${alg}`;
  }
  if (typeof jwk.d === 'string') return 'private key material published in the JWKS';
  return alg;
}

function describeKid(kid: string | undefined): string {
  if (kid === undefined) return 'no kid';
  // The kid comes from an unauthenticated header: bound what it can put in a message.
  return `kid ${JSON.stringify(kid.length > 64 ? `${kid.slice(0, 64)}…` : kid)}`;
}

export function createJwksCache(deps: JwksCacheDeps): JwksCache {
  const { url, now, log } = deps;
  let entries: KeyEntry[] | null = null;
  let nextRefreshAt = 0;
  let lastUnknownKidRefetchAt = Number.NEGATIVE_INFINITY;
  let lastError: Error | null = null;
  // Resolves to the failure (or null); never rejects, so nobody can leave it unhandled.
  let inFlight: Promise<Error | null> | null = null;

  async function load(): Promise<KeyEntry[]> {
    const res = await deps.fetch(url, {
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(deps.fetchTimeoutMs),
    });
    if (!res.ok) throw new Error(`JWKS endpoint answered HTTP ${res.status}`);
    const body: unknown = JSON.parse(await readBoundedText(res, deps.maxBytes ?? JWKS_MAX_BYTES));
    const keys = (body as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys)) throw new Error('JWKS response has no "keys" array');
    const loaded: KeyEntry[] = [];
    for (const raw of keys as unknown[]) {
      if (raw === null || typeof raw !== 'object') continue;
      const jwk = raw as JWK;
      const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
      const alg = algorithmOf(jwk);
      if (!isJwksAlgorithm(alg)) {
        log?.warn({ kid, reason: alg }, 'jwks key skipped');
        continue;
      }
      try {
        const key = await importJWK({ ...jwk, alg }, alg);
        if (key instanceof Uint8Array) continue; // symmetric; excluded above, belt and braces
        loaded.push({ kid, alg, key });
      } catch (err: unknown) {
        log?.warn({ err, kid }, 'jwks key could not be imported');
      }
    }
    if (loaded.length === 0) throw new Error(`JWKS has no usable signing key (${keys.length} listed)`);
    return loaded;
  }

  async function attemptRefresh(): Promise<Error | null> {
    try {
      entries = await load();
      nextRefreshAt = now() + deps.ttlMs;
      lastError = null;
      return null;
    } catch (e: unknown) {
      const err = e instanceof Error ? e : new Error(String(e));
      // Nothing cached: every request fails anyway, so retry soon (but not per request).
      nextRefreshAt = now() + (entries === null ? COLD_RETRY_MS : Math.min(deps.failureRetryMs, deps.ttlMs));
      lastError = err;
      log?.warn({ err, url, cached: entries?.length ?? 0 }, 'jwks refresh failed');
      return err;
    }
  }

  function refresh(): Promise<Error | null> {
    if (inFlight) return inFlight;
    const attempt = attemptRefresh();
    inFlight = attempt;
    void attempt.then(() => {
      if (inFlight === attempt) inFlight = null;
    });
    return attempt;
  }

  type Lookup = { key: CryptoKey } | { miss: 'none' | 'ambiguous' | 'alg'; detail: string };

  function lookup(alg: JwksAlgorithm, kid: string | undefined): Lookup {
    const all = entries ?? [];
    const named = kid === undefined ? all : all.filter((e) => e.kid === kid);
    const fitting = named.filter((e) => e.alg === alg);
    if (fitting.length === 1) return { key: fitting[0]!.key };
    if (fitting.length > 1) {
      return { miss: 'ambiguous', detail: `${fitting.length} ${alg} keys match a token with ${describeKid(kid)}` };
    }
    if (kid !== undefined && named.length > 0) {
      return { miss: 'alg', detail: `key ${describeKid(kid)} is a ${named[0]!.alg} key, but the token says ${alg}` };
    }
    const known = all.map((e) => e.kid ?? '(none)').join(', ');
    return { miss: 'none', detail: `no ${alg} key with ${describeKid(kid)} in the JWKS (known kids: ${known})` };
  }

  return {
    keyFor: async function keyFor(alg, kid) {
      let refreshed = false;
      if (now() >= nextRefreshAt || (entries === null && inFlight)) {
        await refresh();
        refreshed = true;
        // A failed refresh with keys cached: keep serving them (already logged).
      }
      if (entries === null) {
        const reason = lastError?.message ?? 'unknown error';
        throw new JwksError('jwks-unavailable', `could not load the JWKS from ${url}: ${reason}`, { cause: lastError });
      }
      let found = lookup(alg, kid);
      if ('miss' in found && found.miss === 'none' && !refreshed) {
        if (inFlight) {
          await inFlight;
          found = lookup(alg, kid);
        } else if (now() - lastUnknownKidRefetchAt >= deps.unknownKidCooldownMs) {
          // Key rotation: mana-auth may have published a key we have not seen yet.
          lastUnknownKidRefetchAt = now();
          await refresh();
          found = lookup(alg, kid);
        }
      }
      if ('key' in found) return found.key;
      throw new JwksError(found.miss === 'alg' ? 'alg-not-allowed' : 'unknown-key', found.detail);
    },
  };
}
