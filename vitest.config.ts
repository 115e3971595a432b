import { defineConfig } from 'vitest/config';

// Two projects: unit tests need no root and no kernel; integration tests run as root against
// the real kernel. Integration files run one at a time: several of them create host-level
// objects (bridges, nftables tables), and unique per-test prefixes keep them apart from any
// other process, but running files serially keeps a failing file's damage visible and bounded.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          // Removes the skeleton of Shoal's nftables tables that the run itself created.
          // cni-daemon-setup: SHOAL_TEST_CNI_DAEMON=1 serves the plugins from a daemon.
          globalSetup: ['test/integration/global-setup.ts', 'test/integration/cni-daemon-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
    ],
  },
});
