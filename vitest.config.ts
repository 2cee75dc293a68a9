import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The sync ledger is on in every test: a missing fsync fails the checkpoint.
    env: { LAMSTORE_VERIFY_SYNC: '1' },
  },
});
