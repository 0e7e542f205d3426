/**
 * Config: defaults, the seed's variable names, one clear line per bad value,
 * production's refusals, and the real entry point exiting 1 on a bad PORT.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_SERVICE_KEY, loadConfig } from '../src/config.js';

function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (err: unknown) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected loadConfig to throw');
}

describe('loadConfig', () => {
  it('has working defaults with an empty environment', () => {
    const c = loadConfig({}, '1.2.3');
    expect(c.port).toBe(3066);
    expect(c.env).toBe('development');
    expect(c.version).toBe('1.2.3');
    expect(c.databaseUrl).toBeUndefined(); // → embedded Postgres
    expect(c.serviceKey).toBe(DEFAULT_SERVICE_KEY);
    expect(c.tick).toEqual({ intervalMs: 1000, enabled: true });
    expect(c.llm.url).toBeUndefined();
    expect(c.devSyncTable).toBe(true);
    expect(c.embedded.dir).toBe('.data/pg');
    expect(c.instanceId).toMatch(/.+/);
  });

  it('reads TRUST_PROXY as off, a hop count, or trusted addresses and ranges', () => {
    expect(loadConfig({}).trustProxy).toEqual({ kind: 'none' });
    expect(loadConfig({ TRUST_PROXY: '1' }).trustProxy).toEqual({ kind: 'hops', hops: 1 });
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8,::1' }).trustProxy).toMatchObject({ kind: 'list', entries: ['10.0.0.0/8', '::1'] });
  });

  it('reads the seed names', () => {
    const c = loadConfig({
      PORT: '4000',
      SYNC_DATABASE_URL: 'postgres://u:p@db:5432/mana_sync',
      DEV_MODE: '1',
      MANA_LLM_URL: 'http://llm:8080',
      MANA_SERVICE_KEY: 'a-real-secret-key',
      TICK_INTERVAL_MS: '60000',
      TICK_ENABLED: 'false',
    });
    expect(c.port).toBe(4000);
    expect(c.databaseUrl).toBe('postgres://u:p@db:5432/mana_sync');
    expect(c.llm.url).toBe('http://llm:8080');
    expect(c.serviceKey).toBe('a-real-secret-key');
    expect(c.tick).toEqual({ intervalMs: 60000, enabled: false });
  });

  it('accepts DATABASE_URL as an alias; SYNC_DATABASE_URL wins when both are set', () => {
    expect(loadConfig({ DEV_MODE: '1', DATABASE_URL: 'postgres://a@h/d' }).databaseUrl).toBe('postgres://a@h/d');
    expect(loadConfig({ DEV_MODE: '1', DATABASE_URL: 'postgres://a@h/d', SYNC_DATABASE_URL: 'postgres://b@h/d' }).databaseUrl).toBe('postgres://b@h/d');
  });

  it('treats an empty URL as unset', () => {
    expect(loadConfig({ SYNC_DATABASE_URL: '', MANA_LLM_URL: '' }).databaseUrl).toBeUndefined();
  });

  it('treats any empty value as unset (PORT= in a compose file is the default port, not a random one)', () => {
    const c = loadConfig({ PORT: '', TICK_INTERVAL_MS: '  ', TICK_ENABLED: '', MANA_SERVICE_KEY: '' });
    expect(c.port).toBe(3066);
    expect(c.tick).toEqual({ intervalMs: 1000, enabled: true });
    expect(c.serviceKey).toBe(DEFAULT_SERVICE_KEY);
  });

  it('reads integers as decimal digits only (no hex, exponents or fractions read as something else)', () => {
    expect(loadConfig({ PORT: ' 8080 ' }).port).toBe(8080);
    for (const v of ['0x50', '1e3', '80.0', '+80', 'Infinity']) {
      const problems = problemsOf({ PORT: v });
      expect(problems, v).toHaveLength(1);
      expect(problems[0]).toMatch(/^PORT: expected an integer/);
    }
  });

  it.each([
    ['true', true],
    ['1', true],
    ['false', false],
    ['0', false],
  ])('TICK_ENABLED=%s → %s', (v, expected) => {
    expect(loadConfig({ TICK_ENABLED: v }).tick.enabled).toBe(expected);
  });

  it.each([
    ['PORT', 'abc', /PORT: expected an integer/],
    ['PORT', '70000', /PORT: expected an integer <= 65535/],
    ['PORT', '30.5', /PORT: expected an integer/],
    ['TICK_INTERVAL_MS', 'soon', /TICK_INTERVAL_MS: expected an integer/],
    ['TICK_INTERVAL_MS', '0', /TICK_INTERVAL_MS: expected an integer >= 50/],
    ['TICK_ENABLED', 'maybe', /TICK_ENABLED: expected true or false/],
    ['SYNC_DATABASE_URL', 'not a url', /SYNC_DATABASE_URL: expected a postgres:\/\/ URL/],
    ['SYNC_DATABASE_URL', 'http://db:5432/x', /SYNC_DATABASE_URL: expected a postgres:\/\/ URL/],
    ['DATABASE_URL', 'nope', /DATABASE_URL: expected a postgres:\/\/ URL/],
    ['MANA_LLM_URL', 'llm:8080', /MANA_LLM_URL: expected an http\(s\) URL/],
    ['MANA_LLM_URL', 'not a url', /MANA_LLM_URL: expected an http\(s\) URL/],
    ['MANA_SERVICE_KEY', 'short', /MANA_SERVICE_KEY: expected at least 8 characters/],
    ['NODE_ENV', 'staging', /NODE_ENV: expected development, production or test/],
    ['TRUST_PROXY', 'true', /TRUST_PROXY: expected a hop count \(1-10\) or a comma-separated list of IP addresses and CIDR ranges, got "true"/],
    ['TRUST_PROXY', '10.0.0.0/40', /TRUST_PROXY: expected a hop count/],
    ['TRUST_PROXY', '25', /TRUST_PROXY: expected at most 10 hops/],
    ['DEFAULT_TIMEZONE', 'Mars/Olympus', /DEFAULT_TIMEZONE: expected an IANA time zone such as UTC or Europe\/Berlin/],
  ])('%s=%s → ConfigError naming it and what was expected', (name, value, pattern) => {
    const problems = problemsOf({ [name]: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(pattern);
    expect(problems[0]!.startsWith(`${name}:`)).toBe(true);
  });

  it('quotes the bad value (shortened) but never the secret when the secret is fine', () => {
    const [p] = problemsOf({ PORT: 'x'.repeat(100) });
    expect(p!.length).toBeLessThan(120);
    expect(p).toContain('(got "xxxx');
  });

  it('lists every problem at once, one line each', () => {
    const problems = problemsOf({ PORT: 'abc', TICK_ENABLED: 'maybe', SYNC_DATABASE_URL: 'nope' });
    expect(problems).toHaveLength(3);
    const err = new ConfigError(problems);
    expect(err.message.split('\n')).toHaveLength(4);
    for (const name of ['PORT', 'TICK_ENABLED', 'SYNC_DATABASE_URL']) expect(problems.some((p) => p.startsWith(`${name}:`))).toBe(true);
  });

  describe('production', () => {
    const prod = {
      NODE_ENV: 'production',
      SYNC_DATABASE_URL: 'postgres://u@db/mana_sync',
      MANA_SERVICE_KEY: 'a-real-secret-key',
      JWKS_URL: 'https://auth.mana.example/api/auth/jwks',
      JWT_ISSUER: 'https://auth.mana.example',
      JWT_AUDIENCE: 'mana',
    };

    it('starts with a database URL, a real key and a JWKS with issuer and audience, and never creates sync_changes', () => {
      const c = loadConfig(prod);
      expect(c.env).toBe('production');
      expect(c.mode).toBe('production');
      expect(c.devSyncTable).toBe(false);
      expect(c.devDefaults).toBe(false);
      expect(c.syncSchema).toBe('public');
      expect(c.syncWriterRole).toBe('mana_ai_writer');
      expect(c.syncCreateIndex).toBe(false);
      expect(c.jwt).toEqual({ jwksUrl: prod.JWKS_URL, issuer: prod.JWT_ISSUER, audience: prod.JWT_AUDIENCE });
    });

    it('with SYNC_DATABASE_URL and NODE_ENV unset it is production (no dev table, no dev routes) unless DEV_MODE=1', () => {
      const { NODE_ENV: _, ...unset } = prod;
      const c = loadConfig(unset);
      expect(c.mode).toBe('production');
      expect(c.devSyncTable).toBe(false);
      expect(c.devDefaults).toBe(false);
      // Missing production settings are refused, saying why production rules apply.
      const problems = problemsOf({ SYNC_DATABASE_URL: 'postgres://u@db/mana_sync' });
      expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(['JWKS_URL', 'JWT_AUDIENCE', 'JWT_ISSUER', 'MANA_SERVICE_KEY']);
      for (const p of problems) expect(p).toMatch(/SYNC_DATABASE_URL set and no DEV_MODE=1/);
      const dev = loadConfig({ SYNC_DATABASE_URL: 'postgres://u@db/mana_sync', DEV_MODE: '1' });
      expect(dev.mode).toBe('dev');
      expect(dev.devDefaults).toBe(true);
      expect(dev.devSyncTable).toBe(true);
    });

    it('refuses DEV_MODE=1 with NODE_ENV=production', () => {
      expect(problemsOf({ ...prod, DEV_MODE: '1' })).toEqual([expect.stringMatching(/^DEV_MODE: expected unset in production/)]);
    });

    it('requires JWKS_URL, JWT_ISSUER and JWT_AUDIENCE, one line each', () => {
      for (const name of ['JWKS_URL', 'JWT_ISSUER', 'JWT_AUDIENCE'] as const) {
        const problems = problemsOf({ ...prod, [name]: undefined });
        expect(problems).toHaveLength(1);
        expect(problems[0]!.startsWith(`${name}: expected a value in production`)).toBe(true);
      }
    });

    it('requires https for JWKS_URL and MANA_LLM_URL except on loopback hosts (sidecars)', () => {
      for (const name of ['JWKS_URL', 'MANA_LLM_URL'] as const) {
        const problems = problemsOf({ ...prod, [name]: 'http://auth.internal:3001/jwks' });
        expect(problems).toEqual([expect.stringMatching(new RegExp(`^${name}: expected an https: URL in production`))]);
        for (const host of ['127.0.0.1', 'localhost', '[::1]', '127.8.9.10']) {
          expect(loadConfig({ ...prod, [name]: `http://${host}:3001/x` }).mode).toBe('production');
        }
      }
    });

    it('sends MANA_LLM_API_KEY to mana-llm when set, else the service key', () => {
      expect(loadConfig(prod).llm.apiKey).toBe(prod.MANA_SERVICE_KEY);
      expect(loadConfig({ ...prod, MANA_LLM_API_KEY: 'an-llm-only-key' }).llm.apiKey).toBe('an-llm-only-key');
    });

    it('never echoes a secret in a problem line', () => {
      const secrets = { MANA_SERVICE_KEY: 'short', MANA_LLM_API_KEY: 'tiny', METRICS_TOKEN: 'small-token', SYNC_DATABASE_URL: 'mysql://root:hunter2@db/x' };
      const problems = problemsOf({ ...prod, ...secrets });
      expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(['MANA_LLM_API_KEY', 'MANA_SERVICE_KEY', 'METRICS_TOKEN', 'SYNC_DATABASE_URL']);
      for (const value of Object.values(secrets)) for (const p of problems) expect(p).not.toContain(value);
      expect(problems.join('\n')).not.toContain('hunter2');
    });

    it('checks the VAPID key pair before anything starts', () => {
      const problems = problemsOf({ ...prod, VAPID_PUBLIC_KEY: 'BAAA', VAPID_PRIVATE_KEY: 'AAAA' });
      expect(problems).toEqual([expect.stringMatching(/^VAPID_PUBLIC_KEY\/VAPID_PRIVATE_KEY: expected the VAPID public key to be a 65-byte/)]);
    });

    it('validates SYNC_SCHEMA and SYNC_WRITER_ROLE as plain identifiers', () => {
      expect(loadConfig({ ...prod, SYNC_SCHEMA: 'sync' }).syncSchema).toBe('sync');
      for (const name of ['SYNC_SCHEMA', 'SYNC_WRITER_ROLE']) {
        expect(problemsOf({ ...prod, [name]: 'x"; DROP TABLE y' })).toEqual([expect.stringMatching(new RegExp(`^${name}: expected a lower-case Postgres identifier`))]);
      }
    });

    it('refuses the embedded database', () => {
      const problems = problemsOf({ ...prod, SYNC_DATABASE_URL: undefined });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^SYNC_DATABASE_URL: expected a database URL in production/);
    });

    it('accepts DATABASE_URL alone in production', () => {
      expect(loadConfig({ ...prod, SYNC_DATABASE_URL: undefined, DATABASE_URL: 'postgres://u@db/x' }).databaseUrl).toBe('postgres://u@db/x');
    });

    it('refuses the default service key, set or defaulted', () => {
      for (const key of [undefined, DEFAULT_SERVICE_KEY]) {
        const problems = problemsOf({ ...prod, MANA_SERVICE_KEY: key });
        expect(problems).toHaveLength(1);
        expect(problems[0]).toMatch(/^MANA_SERVICE_KEY: expected a real secret in production/);
        expect(problems[0]).not.toContain(DEFAULT_SERVICE_KEY);
      }
    });

    it('reports every refusal together', () => {
      expect(problemsOf({ NODE_ENV: 'production' }).map((p) => p.split(':')[0])).toEqual([
        'SYNC_DATABASE_URL',
        'MANA_SERVICE_KEY',
        'JWKS_URL',
        'JWT_ISSUER',
        'JWT_AUDIENCE',
      ]);
    });
  });
});

describe('entry point with a bad value', () => {
  it('`node --import tsx src/main.ts` with PORT=abc exits 1 with one clear line on stderr naming PORT', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: new URL('..', import.meta.url),
      env: { PATH: process.env['PATH'], PORT: 'abc' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    const lines = stderr.split('\n').filter((l) => l.trim() !== '');
    const portLines = lines.filter((l) => l.includes('PORT'));
    expect(portLines).toHaveLength(1);
    expect(portLines[0]).toMatch(/PORT: expected an integer/);
    expect(portLines[0]).toContain('"abc"');
    // No stack trace, nothing started.
    expect(stderr).not.toMatch(/\n\s+at /);
    expect(stdout).not.toMatch(/listening|embedded/);
  }, 30_000);
});
