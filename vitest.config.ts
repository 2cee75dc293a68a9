import { defineConfig } from 'vitest/config';
import { FiguresReporter } from './test/helpers/figures-reporter.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The sync ledger is on in every test: a missing fsync fails the checkpoint.
    env: { LAMSTORE_VERIFY_SYNC: '1' },
    // The campaign suites' figure lines, gathered at the end of the run (test/helpers/figures-reporter.ts).
    reporters: ['default', new FiguresReporter()],
  },
});
