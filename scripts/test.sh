#!/usr/bin/env bash
# The project's one test command, for developers and CI alike:
#   bash scripts/test.sh [PYTEST ARGS...]
#   EDGEFLEET_TEST_JOBS=N (parallel pytest workers, default 3),
#   EDGEFLEET_TEST_RUN_TIMEOUT=S (limit per pytest run, default 1800)
#   EDGEFLEET_TEST_EVERY_BACKEND=1, EDGEFLEET_FUZZ_EXAMPLES=500 and EDGEFLEET_SOAK_SECONDS=60:
#   the full profile (the README's Tests section says what the quick one leaves out)
# On a fresh Debian machine it installs what the tests need (PostgreSQL, Chromium and
# ChromeDriver from Debian; edgefleet and its test tools into .venv), lints, smoke-tests the
# demo, then runs the whole suite twice: on SQLite, and on a throwaway PostgreSQL cluster
# (EDGEFLEET_TEST_PG_URL). The Airflow executor's test runs once more, on its own, with Airflow
# from .venv-airflow (built in the background meanwhile; skipped when PYTEST ARGS are given),
# beside the PostgreSQL pass.
# It exits non-zero if any step fails, "no tests ran" included.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/lib/common.sh
source scripts/lib/postgres.sh
source scripts/lib/airflow.sh

# Knobs of this script (read before the clean-up below):
TEST_JOBS=${EDGEFLEET_TEST_JOBS:-3}                # pytest-xdist workers per run
RUN_TIMEOUT=${EDGEFLEET_TEST_RUN_TIMEOUT:-1800}    # seconds, per pytest run
# The full profile, on demand: tests that do not depend on the database on PostgreSQL too,
# more fuzzing examples per operation and a longer soak (the quick profile runs in CI).
EVERY_BACKEND=${EDGEFLEET_TEST_EVERY_BACKEND:-}
FUZZ_EXAMPLES=${EDGEFLEET_FUZZ_EXAMPLES:-}
SOAK_SECONDS=${EDGEFLEET_SOAK_SECONDS:-}

# Tests set up their own configuration; a developer's EDGEFLEET_* must not leak in.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep '^EDGEFLEET_' || true)
# The suite starts hundreds of Python processes (servers, workers, CLI calls, jobs): with
# bytecode caching off (uv installs no .pyc) each one would compile everything it imports
# again, about 1.4 s of CPU for a server instead of 0.9.
unset PYTHONDONTWRITEBYTECODE

STARTED=$SECONDS
RESULTS=()
FAILED=0

# step NAME COMMAND...: run one step, record its outcome, carry on with the next.
step() {
    local name=$1 began=$SECONDS code=0
    shift
    log "$name"
    "$@" || code=$?
    local took=$((SECONDS - began)) outcome=ok
    if ((code == 5)) && [[ $name == pytest* ]]; then
        outcome="FAILED (exit 5: no tests were collected)"
    elif ((code != 0)); then
        outcome="FAILED (exit $code)"
    fi
    ((code == 0)) || FAILED=1
    RESULTS+=("$(printf '%-30s %-44s %4ss' "$name" "$outcome" "$took")")
}

summary() {
    local code=$?
    stop_postgres
    ((${#RESULTS[@]})) || return
    echo
    log "summary"
    printf '  %s\n' "${RESULTS[@]}"
    printf '  %-30s %-44s %4ss\n' total "$( ((FAILED == 0 && code == 0)) && echo ok || echo FAILED)" \
        $((SECONDS - STARTED))
}
trap summary EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

run_pytest() {
    # The suite mostly waits on real processes, so it runs in parallel (EDGEFLEET_TEST_JOBS);
    # tests marked xdist_group (sharing one module-scoped fleet) stay in one worker.
    EDGEFLEET_TEST_EVERY_BACKEND=$EVERY_BACKEND EDGEFLEET_FUZZ_EXAMPLES=$FUZZ_EXAMPLES \
        EDGEFLEET_SOAK_SECONDS=$SOAK_SECONDS \
        timeout -k 30 "$RUN_TIMEOUT" "$VENV/bin/python" -m pytest -ra -p no:cacheprovider \
        -n "$TEST_JOBS" --dist loadgroup --durations=20 "$@"
}

# finish_background PID LOG: wait for a background step, show its output, pass on its code.
finish_background() {
    local code=0
    wait "$1" || code=$?
    cat "$2" >&2
    rm -f "$2"
    return "$code"
}

run_pytest_on_postgres() {
    # The quick profile's fuzzing on PostgreSQL is for what only it refuses (column ranges,
    # NUL bytes); the SQLite pass tries the full quick count against the same routes.
    FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-10} EDGEFLEET_TEST_PG_URL=$PG_URL run_pytest "$@"
}

log "system packages"
ensure_apt_packages postgresql chromium chromium-driver
ensure_venv
if (($# == 0)); then start_airflow_venv; fi
"$VENV/bin/python" --version

step "ruff check" "$VENV/bin/ruff" check .
step "ruff format --check" "$VENV/bin/ruff" format --check .

# Steps that mostly wait (the demos on their jobs' sleeps, Airflow on its own start-up) run in
# the background beside a pytest pass, which leaves CPU idle while its tests wait; each one's
# output is shown afterwards as its own step.
start_postgres
DEMO_PG_URL=$(create_database demo)
DEMO_LOG=$(mktemp -t edgefleet-demo.XXXXXX)
DEMO_PG_LOG=$(mktemp -t edgefleet-demo-pg.XXXXXX)
bash scripts/demo.sh --check >"$DEMO_LOG" 2>&1 &
DEMO_PID=$!
EDGEFLEET_DB_URL=$DEMO_PG_URL bash scripts/demo.sh --check >"$DEMO_PG_LOG" 2>&1 &
DEMO_PG_PID=$!
step "pytest (SQLite)" run_pytest "$@"
step "demo smoke test (SQLite)" finish_background "$DEMO_PID" "$DEMO_LOG"
step "demo smoke test (PostgreSQL)" finish_background "$DEMO_PG_PID" "$DEMO_PG_LOG"
if (($# == 0)); then
    AIRFLOW_LOG=$(mktemp -t edgefleet-airflow.XXXXXX)
    start_airflow_tests "$AIRFLOW_LOG"
fi
step "pytest (PostgreSQL)" run_pytest_on_postgres "$@"
if (($# == 0)); then step "pytest (Airflow)" finish_background "$AIRFLOW_TESTS_PID" "$AIRFLOW_LOG"; fi

exit "$FAILED"
