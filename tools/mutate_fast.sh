#!/usr/bin/env bash
# tools/mutate_fast.sh 'MUTANT_GLOB' [...] [--mutate-skip RESULTS.json] [-- TEST_PATH ...]
# Mutation testing in one pytest process (tools/mutate_fast.py): runs the mutants that
# `./dev mutate` (mutmut) generated in mutants/ against the tests, much faster than
# mutmut's own runner here. Run `./dev mutate` first after changing the mutated source
# (mutmut regenerates mutants/; stop it once it has started running mutants). The tests
# are copied into mutants/ afresh each time. Default tests: the run store's, the claim's
# (filters, re-checks, throttle, load policy) and the rules'. Results: var/mutate_fast.json; survivors printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
globs=(); tests=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; tests=("$@"); break; fi
  case "$1" in
    --mutate-*) globs+=("$1" "$2"); shift 2 ;;  # --mutate-skip FILE, --mutate-timeout S
    *) globs+=(--mutate "$1"); shift ;;
  esac
done
[ ${#tests[@]} -gt 0 ] || tests=(tests/unit/test_rules.py tests/integration/test_runstore.py
  tests/integration/test_claim_filters.py tests/integration/test_claim_recheck.py
  tests/integration/test_throttle.py tests/integration/test_load_policy.py)
[ -d mutants/scheduler_app ] || { echo "run ./dev mutate first (it generates mutants/)" >&2; exit 2; }
[ -n "${MUTATE_NO_COPY:-}" ] || rsync -a --delete tests/ mutants/tests/
mkdir -p var
export PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}
export DATABASE_URL=${DATABASE_URL:-$PG_URL}
export SCHEDULER_TEST_DB=${SCHEDULER_TEST_DB:-test_scheduler_app}_mutmut
cd mutants
PYTHONPATH=../tools exec ../.venv/bin/python -m pytest -p mutate_fast -p no:cacheprovider -p no:xdist \
  --reuse-db -q "${globs[@]}" --mutate-out "../${MUTATE_OUT:-var/mutate_fast.json}" "${tests[@]}"
