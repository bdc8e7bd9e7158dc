#!/usr/bin/env bash
# Run edgefleet on this machine: the central server on its embedded SQLite database and one
# local worker, both in the foreground; a few example jobs are submitted. Ctrl-C stops both.
#   bash scripts/demo.sh           # http://127.0.0.1:8080 (EDGEFLEET_DEMO_PORT to change it)
#   bash scripts/demo.sh --check   # the same on a free port and a scratch home, then exits;
#                                  # non-zero if a job did not end as expected
# State lives in EDGEFLEET_HOME (default: .demo/ in the repository). Set EDGEFLEET_DB_URL to
# run the server on PostgreSQL instead.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/lib/common.sh

CHECK=0
case "${1:-}" in
--check) CHECK=1 ;;
"") ;;
*) die "usage: bash scripts/demo.sh [--check]" ;;
esac

ensure_venv
EF="$VENV/bin/edgefleet"
PY="$VENV/bin/python"

if ((CHECK)); then
    SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/edgefleet-demo.XXXXXX")
    export EDGEFLEET_HOME=$SCRATCH/home
    PORT=$(free_port)
else
    SCRATCH=""
    export EDGEFLEET_HOME=${EDGEFLEET_HOME:-$ROOT/.demo}
    PORT=${EDGEFLEET_DEMO_PORT:-8080}
    if "$PY" -c "import socket,sys; sys.exit(socket.socket().connect_ex(('127.0.0.1', $PORT)) != 0)"; then
        die "port $PORT is in use; run with EDGEFLEET_DEMO_PORT=<another port>"
    fi
fi
export EDGEFLEET_API_URL=http://127.0.0.1:$PORT
WORKER=demo-worker
SERVER_PID=""
WORKER_PID=""

INTERRUPTED=0

# ends PID SECONDS: whether the process is gone within that time.
ends() {
    local _
    for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    return 1
}

# Stop the worker first (it drains: running jobs finish), then the server. After Ctrl-C the
# terminal has already signalled both: give them time before insisting.
stop_all() {
    local pid
    for pid in $WORKER_PID $SERVER_PID; do
        kill -0 "$pid" 2>/dev/null || continue
        ((INTERRUPTED)) && ends "$pid" 10 && continue
        kill -TERM "$pid" 2>/dev/null || true
        ends "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [[ -z $SCRATCH ]] || rm -rf "$SCRATCH"
}
trap stop_all EXIT
trap 'INTERRUPTED=1; echo; log "stopping the worker and the server"; exit 0' INT
trap 'exit 143' TERM

# wait_for SECONDS WHAT PYTHON-EXPRESSION: poll until the expression is true; it may use `api`,
# an admin client of the server (api.get("/workers") and so on).
wait_for() {
    local seconds=$1 what=$2 expression=$3
    "$PY" - "$seconds" "$expression" <<'EOF' || die "timed out waiting for $what"
import sys, time
from edgefleet.cli.api import AdminClient
from edgefleet.settings import Settings

api = None
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    try:
        # The server writes the secret the client signs with as it starts.
        api = api or AdminClient(Settings())
        if eval(sys.argv[2]):
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
}

log "database: ${EDGEFLEET_DB_URL:-sqlite in $EDGEFLEET_HOME}"
"$EF" db migrate

log "starting the server on $EDGEFLEET_API_URL"
"$EF" server --port "$PORT" --log-level warning &
SERVER_PID=$!
wait_for 30 "the server" "api.get('/health') is not None"

log "starting worker $WORKER (concurrency 2, heartbeat every second)"
"$EF" worker --edge-hostname "$WORKER" --concurrency 2 --heartbeat-interval 1 &
WORKER_PID=$!
wait_for 30 "the worker to register" "any(w['hostname'] == '$WORKER' for w in api.get('/workers'))"

log "submitting example jobs"
FIRST=$("$EF" submit -- sh -c 'echo "hello from $(hostname)"; sleep 2; echo bye')
"$EF" submit -- sh -c 'for i in 1 2 3; do echo "step $i"; sleep 1; done'
"$EF" submit --priority 5 -- uname -a
"$EF" submit -- sh -c 'echo "this one fails" >&2; exit 3'

wait_for 60 "the jobs to finish" \
    "all(j['state'] in ('success', 'failed') for j in api.get('/jobs', params={'limit': 10000})[-4:])"

log "edgefleet jobs list"
"$EF" jobs list
log "edgefleet logs $FIRST"
"$EF" logs "$FIRST"
log "edgefleet list-workers"
"$EF" list-workers
log "edgefleet set-worker-concurrency -H $WORKER -c 4   (applied at once, no restart)"
"$EF" set-worker-concurrency -H "$WORKER" -c 4
sleep 1.5
"$EF" list-workers
log "edgefleet set-worker-concurrency -H $WORKER --reset   (back to the worker's own -c 2)"
"$EF" set-worker-concurrency -H "$WORKER" --reset

if ((CHECK)); then
    states=$("$EF" jobs list -o json | "$PY" -c 'import json, sys; print(" ".join(j["state"] for j in sorted(json.load(sys.stdin), key=lambda j: j["id"])[-4:]))')
    [[ $states == "success success success failed" ]] || die "unexpected job states: $states"
    log "demo check passed"
    exit 0
fi

cat <<EOF

edgefleet is running: server on $EDGEFLEET_API_URL, worker $WORKER. From another shell:
    export EDGEFLEET_HOME=$EDGEFLEET_HOME EDGEFLEET_API_URL=$EDGEFLEET_API_URL
    $EF submit -- echo hi
    $EF jobs list
    $EF list-workers
Press Ctrl-C to stop the worker and the server.
EOF
wait
