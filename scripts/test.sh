#!/usr/bin/env bash
# The test command (README): typecheck, lint, every unit test file (several at once), then every end-to-end file
# (one at a time).
# End-to-end tests need root and Open vSwitch; as root, missing Debian packages are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
if [ "$(id -u)" = 0 ]; then bash scripts/ensure-deps.sh --with-browser; fi
npx tsc -p tsconfig.json --noEmit
npx biome check .
shopt -s nullglob
unit=(test/unit/*.test.ts)
e2e=(test/e2e/*.test.ts)
failed=0
# Unit files are pure (no root, namespaces, OVS, fixed ports or paths): several at once, at least two (node's own
# default is one less than the cores: one file at a time on a 2-core machine).
jobs=$(nproc)
[ "$jobs" -ge 2 ] || jobs=2
node --import tsx --test --test-concurrency="$jobs" --test-reporter=spec "${unit[@]}" || failed=1
# e2e tests build network namespaces and OVS instances: run files one at a time. They run even when a unit file
# failed (one run shows every failure); either failing fails the command.
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${e2e[@]}" || failed=1
exit "$failed"
