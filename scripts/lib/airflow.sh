# Airflow's own virtualenv for the Airflow executor's tests; source it, don't run it.
#   start_airflow_venv  builds $AIRFLOW_VENV in the background (reused while pyproject.toml
#                       is unchanged): Airflow and edgefleet, `uv pip install -e '.[airflow]'`
#                       (pip where uv could not be installed); needs ensure_venv first
#   start_airflow_tests LOG  waits for it, then runs tests/e2e/test_airflow.py against it in
#                       the background
# Airflow's install takes minutes, so it overlaps the steps before the one that needs it.
# Expects ROOT, VENV and run_pytest (scripts/test.sh).

AIRFLOW_VENV=${EDGEFLEET_AIRFLOW_VENV:-$ROOT/.venv-airflow}
AIRFLOW_VENV_LOG=""
AIRFLOW_VENV_PID=""

ensure_airflow_venv() {
    local stamp="$AIRFLOW_VENV/.edgefleet-installed" wanted
    wanted=$(sha256sum <"$ROOT/pyproject.toml" | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") == "$wanted" ]] &&
        "$AIRFLOW_VENV/bin/python" -c 'import edgefleet, airflow' 2>/dev/null; then
        echo "reusing $AIRFLOW_VENV"
        return 0
    fi
    if ! "$AIRFLOW_VENV/bin/python" -c 'import sys' 2>/dev/null; then
        make_venv "$AIRFLOW_VENV"
    fi
    # Airflow named first: uv settles packages in the order it meets them, so the newest
    # Airflow (which caps FastAPI) wins over the newest FastAPI (which an older Airflow
    # accepts on paper, then its api-server fails to start with).
    venv_install "$AIRFLOW_VENV" apache-airflow -e "$ROOT[airflow]"
    echo "$wanted" >"$stamp"
}

start_airflow_venv() {
    AIRFLOW_VENV_LOG=$(mktemp -t edgefleet-airflow-venv.XXXXXX)
    log "building $AIRFLOW_VENV in the background (log: $AIRFLOW_VENV_LOG)"
    ensure_airflow_venv >"$AIRFLOW_VENV_LOG" 2>&1 &
    AIRFLOW_VENV_PID=$!
}

# start_airflow_tests LOG: once the virtualenv is ready, runs the Airflow tests in the
# background (their output to LOG); AIRFLOW_TESTS_PID is what to wait for.
start_airflow_tests() {
    local began=$SECONDS
    if wait "$AIRFLOW_VENV_PID"; then
        log "Airflow's virtualenv ready (waited $((SECONDS - began))s)"
        EDGEFLEET_TEST_AIRFLOW_PYTHON=$AIRFLOW_VENV/bin/python \
            run_pytest -n 2 tests/e2e/test_airflow.py >"$1" 2>&1 &
    else
        airflow_venv_failed >"$1" 2>&1 &
    fi
    AIRFLOW_TESTS_PID=$!
}

airflow_venv_failed() {
    tail -n 30 "$AIRFLOW_VENV_LOG"
    if [[ ${CI:-} == true ]]; then
        printf 'error: installing Airflow into %s failed (above); CI runs the Airflow tests\n' \
            "$AIRFLOW_VENV"
        return 1
    fi
    printf 'warning: installing Airflow failed (above): the Airflow tests did not run\n'
}
