#!/usr/bin/env bash
# Mutation testing with StrykerJS (not part of `npm test`: slow on 2 cores). Stryker, its vitest runner and
# TypeScript checker are installed into a cache folder of their own (.cache/stryker, outside package.json),
# so the project's dependencies stay as they are.
#   npm run mutate                                 src/hub/seen.ts against its tests
#   npm run mutate -- src/database/outbox.ts          one module against the tests listed for it below
#   MUTATE_TESTS='test/unit/x.test.ts' npm run mutate -- src/x.ts   other tests (comma-separated globs)
#   MUTATE_CONCURRENCY=2 ...                       more test runners (default 1: the machine is shared)
# One module per run: with per-test coverage Stryker runs only the tests that reach each mutant, so a run
# takes minutes. The report: reports/mutation/mutation.html and .json (a copy per module, <name>.json); the
# score is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.cache/stryker
if [ ! -x "$TOOLS/node_modules/.bin/stryker" ]; then
  mkdir -p "$TOOLS"
  [ -f "$TOOLS/package.json" ] || echo '{"name":"leafbridge-stryker","private":true}' > "$TOOLS/package.json"
  npm install --prefix "$TOOLS" --no-audit --no-fund \
    @stryker-mutator/core@9 @stryker-mutator/vitest-runner@9 @stryker-mutator/typescript-checker@9 \
    vitest@3.2.7 typescript@5.9
fi

# The tests that prove each module's promises. Only tests that run the module in the test process count:
# a mutant lives in the test process, so tests that drive a spawned agent cannot kill it.
tests_for() {
  case "$1" in
    src/database/outbox.ts) echo 'test/unit/database/outbox.test.ts' ;;
    src/broker/persistence.ts)
      echo 'test/contract/brokerPersistence.contract.test.ts,test/unit/broker/persistence*.test.ts' ;;
    src/broker/auth.ts) echo 'test/unit/broker/auth.test.ts' ;;
    src/hub/seen.ts) echo 'test/unit/hub/seen.test.ts' ;;
    src/hub/statusPatch.ts) echo 'test/unit/hub/statusPatch.test.ts' ;;
    src/hub/statusWriter.ts) echo 'test/unit/hub/statusWriter.test.ts' ;;
    src/hub/*) echo 'test/unit/hub/**/*.test.ts' ;;
    src/sync/bridge.ts) echo 'test/unit/sync/**/*.test.ts,test/integration/bridgePuback.test.ts' ;;
    src/sync/engine.ts) echo 'test/unit/sync/engine.test.ts' ;;
    src/sync/*) echo 'test/unit/sync/**/*.test.ts' ;;
    src/deviceplugin/slots.ts | src/deviceplugin/storeClaims.ts)
      echo 'test/unit/deviceplugin/*laims*.test.ts,test/unit/deviceplugin/slots*.test.ts' ;;
    src/deviceplugin/manager.ts) echo 'test/integration/devicePluginManager.test.ts,test/unit/deviceplugin/manager.test.ts' ;;
    src/registry/kubeDeviceStore.ts) echo 'test/integration/deviceStore.test.ts,test/integration/kubeDeviceStoreWrites.test.ts' ;;
    src/model/naming.ts) echo 'test/unit/model/nameScheme.test.ts,test/unit/discovery/deviceNames.test.ts,test/unit/deviceplugin/slots.test.ts' ;;
    src/discovery/deviceNames.ts) echo 'test/unit/discovery/deviceNames.test.ts,test/unit/discovery/manager.test.ts' ;;
    *) echo 'test/unit/**/*.test.ts' ;;
  esac
}

module="${1:-src/hub/seen.ts}"
export MUTATE_TESTS="${MUTATE_TESTS:-$(tests_for "$module")}"
# Only the outbox's tests run the built code (a writer process killed mid-stream). It is built once, here, and
# copied into Stryker's sandbox: built by the tests' global setup instead, each test runner Stryker restarts
# after a timeout rebuilds within its next mutant's time limit, times out and is restarted again (a run of
# 2026-12-04 counted 207 of its first 272 mutants as timeouts that way, none as survivors).
case "$module" in src/database/outbox.ts) npm run --silent build ;; esac
export LEAFBRIDGE_BUILT=1
echo "mutate: $module; tests: $MUTATE_TESTS" >&2
# The TypeScript checker type-checks only the mutated module, what it imports and the declarations in src/types
# (stryker.config.json names this file), not the whole repository with its tests, bench and examples: seconds
# per mutant, not minutes.
printf '{"extends": "./tsconfig.json", "include": ["src/types"], "files": ["%s"]}\n' "$module" > .stryker-tsconfig.json
# Each module keeps its own incremental file (a rerun tests only the mutants whose code or tests changed) and
# its own copy of the JSON report.
name="$(basename "$module" .ts)"
"$TOOLS/node_modules/.bin/stryker" run --mutate "$module" --concurrency "${MUTATE_CONCURRENCY:-1}" \
  --incremental --incrementalFile "reports/mutation/$name.incremental.json"
cp reports/mutation/mutation.json "reports/mutation/$name.json"
