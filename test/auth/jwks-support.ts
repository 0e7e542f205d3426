/**
 * Keys, a JWKS endpoint on loopback and hand-crafted tokens for the user-auth
 * tests: real Ed25519/P-256/RSA keys from jose, a server that counts requests
 * and can fail or hang on demand.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { base64url, exportJWK, generateKeyPair, type JWK } from 'jose';

export type Alg = 'EdDSA' | 'ES256' | 'RS256';
export interface TestKey {
  kid: string;
  alg: Alg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

export async function makeKey(kid: string, alg: Alg): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, jwk };
}

/** A JWKS endpoint on loopback that counts requests and can fail on demand. */
export interface JwksServer {
  url: string;
  requests: number;
  keys: JWK[];
  mode: 'up' | 'error' | 'hang';
  delayMs: number;
  close(): Promise<void>;
}

export async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state = { requests: 0, keys, mode: 'up' as JwksServer['mode'], delayMs: 0 };
  const server: Server = createServer((req, res) => {
    state.requests += 1;
    if (state.mode === 'hang') return; // never answers; the client's timeout must fire
    const answer = (): void => {
      if (state.mode === 'error') {
        res.writeHead(503).end('down');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
    };
    if (state.delayMs > 0) setTimeout(answer, state.delayMs);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/api/auth/jwks`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  });
}

/** A token from raw parts, for headers and payloads no signer would produce. */
export function craft(header: object, payload: object, signature = ''): string {
  const enc = (o: object): string => base64url.encode(JSON.stringify(o));
  return `${enc(header)}.${enc(payload)}.${signature}`;
}
