/**
 * mana-auth as production has it, for the smoke suite: an Ed25519 key pair,
 * its public half served as a JWKS over HTTP, and EdDSA tokens with issuer
 * and audience signed by it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';

export interface TestIssuer {
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** A token for `userId`; `claims` overrides iss/aud to make a wrong one. */
  token(userId: string, claims?: { iss?: string; aud?: string }): Promise<string>;
  close(): Promise<void>;
}

export async function startTestIssuer(): Promise<TestIssuer> {
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'smoke-1', alg: 'EdDSA', use: 'sig' };
  const server: Server = createServer((req, res) => {
    const body = JSON.stringify({ keys: [jwk] });
    res.writeHead(req.url === '/api/auth/jwks' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(req.url === '/api/auth/jwks' ? body : '{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = 'https://auth.mana.test';
  const audience = 'mana-ai';
  const sign = (key: CryptoKey, userId: string, claims: { iss?: string; aud?: string }) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA', kid: 'smoke-1' })
      .setSubject(userId)
      .setIssuer(claims.iss ?? issuer)
      .setAudience(claims.aud ?? audience)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(key);
  return {
    jwksUrl: `${base}/api/auth/jwks`,
    issuer,
    audience,
    token: (userId, claims = {}) => sign(privateKey, userId, claims),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
