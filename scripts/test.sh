#!/usr/bin/env bash
# The test command (README): typecheck, lint, then every unit and end-to-end test in one node:test run.
# End-to-end tests need root and Open vSwitch; as root, missing Debian packages are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
if [ "$(id -u)" = 0 ]; then bash scripts/ensure-deps.sh --with-browser; fi
npx tsc -p tsconfig.json --noEmit
npx biome check .
shopt -s nullglob
files=(test/unit/*.test.ts test/e2e/*.test.ts)
# e2e tests build network namespaces and OVS instances: run files one at a time.
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
