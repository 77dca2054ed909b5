#!/usr/bin/env bash
# Mutation testing with StrykerJS (not part of `npm test`: slow on 2 cores). Stryker, its vitest runner and
# TypeScript checker are installed into a cache folder of their own (.cache/stryker, outside package.json),
# so the project's dependencies stay as they are.
#   scripts/mutate.sh                                  src/hub/seen.ts against test/unit/hub + hub.test.ts
#   MUTATE='src/hub/statusPatch.ts' scripts/mutate.sh  other modules (comma-separated globs)
#   MUTATE_TESTS='test/unit/store/outbox.test.ts' ...  the tests to run against them (comma-separated globs)
# The report: reports/mutation/mutation.html and .json; the score per file is printed at the end.
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
args=()
if [ -n "${MUTATE:-}" ]; then args+=(--mutate "$MUTATE"); fi
exec "$TOOLS/node_modules/.bin/stryker" run "${args[@]}"
