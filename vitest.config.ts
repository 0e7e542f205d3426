import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // A file that leaves a server, socket, pool, child or timer alive fails.
    setupFiles: ['test/support/leak-check.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration files each get their own database; running them in parallel
    // on 2 cores mostly adds contention.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
