# A throwaway PostgreSQL cluster for tests; source it, don't run it.
#   start_postgres   initialises and starts a cluster on a free port, sets PG_URL and PG_PORT
#   create_database  makes an empty database on it and prints its URL
#   stop_postgres    stops it and deletes its files (safe to call twice)
# The cluster is tests/support/database.py's PgCluster, the one the benchmarks use too.

PG_DIR=""
PG_URL=""
PG_PORT=""

start_postgres() {
    local settings
    settings=$("$VENV/bin/python" tests/support/database.py start) || die "could not start PostgreSQL"
    PG_DIR=$(sed -n 's/^PG_DIR=//p' <<<"$settings")
    PG_PORT=$(sed -n 's/^PG_PORT=//p' <<<"$settings")
    PG_URL=$(sed -n 's/^PG_URL=//p' <<<"$settings")
    log "PostgreSQL running on port $PG_PORT ($PG_DIR)"
}

# create_database NAME: an empty database on the cluster; prints its URL.
create_database() {
    psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE \"$1\"" >&2
    echo "postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/$1"
}

stop_postgres() {
    [[ -n $PG_DIR && -d $PG_DIR ]] || return 0
    "$VENV/bin/python" tests/support/database.py stop "$PG_DIR" || true
    PG_DIR=""
}
