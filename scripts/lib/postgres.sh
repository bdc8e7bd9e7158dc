# A throwaway PostgreSQL cluster for tests; source it, don't run it.
#   start_postgres   initialises and starts a cluster on a free port, sets PG_URL and PG_PORT
#   create_database  makes an empty database on it and prints its URL
#   stop_postgres    stops it and deletes its files (safe to call twice)
# initdb refuses to run as root, so as root the cluster runs as the `postgres` user.

PG_DIR=""
PG_URL=""
PG_PORT=""
PG_AS=()

_pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -n $bin && -x $bin/initdb ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    echo "$bin"
}

start_postgres() {
    local bin port attempt
    bin=$(_pg_bin)
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/edgefleet-pg.XXXXXX")
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "user postgres missing (is the postgresql package installed?)"
        chown postgres: "$PG_DIR"
        PG_AS=(runuser -u postgres --)
    fi
    "${PG_AS[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale \
        >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    for attempt in 1 2 3; do
        port=$(free_port)
        if "${PG_AS[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
            -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null; then
            PG_PORT=$port
            PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
            log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') running on port $port ($PG_DIR)"
            return 0
        fi
        echo "PostgreSQL did not start on port $port (attempt $attempt):" >&2
        tail -5 "$PG_DIR/server.log" >&2 || true
    done
    die "could not start PostgreSQL"
}

# create_database NAME: an empty database on the cluster; prints its URL.
create_database() {
    psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE \"$1\"" >&2
    echo "postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/$1"
}

stop_postgres() {
    [[ -n $PG_DIR && -d $PG_DIR ]] || return 0
    if [[ -f $PG_DIR/data/postmaster.pid ]]; then
        "${PG_AS[@]}" "$(_pg_bin)/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
    PG_DIR=""
}
