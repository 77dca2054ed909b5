#!/usr/bin/env bash
# The whole test run: system peers, static checks, build, then every test suite (unit, integration, interop).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
echo "== lint (biome)";            npx biome check .
echo "== typecheck (tsc, tests included)"; npx tsc -p tsconfig.json
echo "== import rules (dependency-cruiser)"; npx depcruise src discovery-handlers firmware-stubs examples --config .dependency-cruiser.cjs
echo "== build";                   npm run build --silent
echo "== tests (vitest)"
LEAFBRIDGE_BUILT=1 npx vitest run
