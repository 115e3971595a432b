#!/usr/bin/env bash
# The README's test command: sets up what the tests need, then runs typecheck, lint and every
# vitest project (unit and, as root, integration against the real kernel). The last line is
# `N passed, N failed`, computed from vitest's JSON report.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "test: the integration tests create namespaces, links and nftables tables: run as root" >&2
  exit 1
fi

bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
# The Node setup chose (Node 24), first on PATH for npx, vitest and every process the tests start.
source scripts/node-env.sh || { echo "0 passed, 1 failed"; exit 1; }

static_failed=0
echo "test: typecheck" >&2
npm run --silent typecheck || static_failed=$((static_failed + 1))
echo "test: lint" >&2
npm run --silent lint || static_failed=$((static_failed + 1))

report=.vitest-report.json
rm -f "$report"
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
vitest_status=$?

node scripts/test-summary.mjs "$report" "$static_failed"
summary_status=$?
if [[ $vitest_status -ne 0 || $summary_status -ne 0 || $static_failed -ne 0 ]]; then exit 1; fi
