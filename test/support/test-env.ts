/** What every test coordinator runs with unless a test says otherwise: dev defaults, any free port, fast ticks. */
export const TEST_ENV: Readonly<Record<string, string>> = {
  NODE_ENV: 'test',
  PORT: '0',
  HOST: '127.0.0.1',
  LOG_LEVEL: 'silent',
  TICK_INTERVAL_MS: '100',
};
