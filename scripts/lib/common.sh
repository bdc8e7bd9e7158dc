# Shared by scripts/test.sh and scripts/demo.sh; source it, don't run it.
# Expects ROOT (the repository) to be set.

VENV=${EDGEFLEET_VENV:-$ROOT/.venv}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly, or through sudo for a developer who is not root.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

# Install Debian packages that are missing (skipped when all are there already).
ensure_apt_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# A Python of at least 3.11 to build the virtualenv with.
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    die "edgefleet needs Python 3.11 or newer (set PYTHON=/path/to/python3)"
}

# Create $VENV if needed and install edgefleet (editable) with its test tools into it.
# Reinstalls only when pyproject.toml changed since the last install.
ensure_venv() {
    if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        local python
        python=$(find_python)
        log "creating virtualenv $VENV with $python"
        rm -rf "$VENV"
        if ! "$python" -m venv "$VENV" 2>/dev/null; then
            # Debian's own python3 keeps venv (ensurepip) in a separate package.
            ensure_apt_packages python3-venv
            rm -rf "$VENV"
            "$python" -m venv "$VENV"
        fi
    fi
    if [[ ! -x $VENV/bin/uv ]] &&
        ! "$VENV/bin/python" -m pip install -qq --disable-pip-version-check uv; then
        log "uv could not be installed: installing with pip (slower)"
    fi
    local stamp="$VENV/.edgefleet-installed" wanted
    wanted=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") == "$wanted" ]] && "$VENV/bin/python" -c 'import edgefleet' 2>/dev/null; then
        return 0
    fi
    log "installing edgefleet and its test tools into $VENV"
    venv_install "$VENV" -e "$ROOT[test]"
    echo "$wanted" >"$stamp"
}

# venv_install DIR PIP-ARGS...: install into the virtualenv DIR with uv from $VENV (seconds and
# little CPU), or with DIR's own pip where uv could not be installed (minutes of a core).
venv_install() {
    local target=$1
    shift
    if [[ -x $VENV/bin/uv ]]; then
        "$VENV/bin/uv" pip install -q --python "$target/bin/python" "$@"
    else
        "$target/bin/python" -m pip install -qq --disable-pip-version-check "$@"
    fi
}

# make_venv DIR: a new, empty virtualenv in DIR (with uv when $VENV has it; uv's has no pip).
make_venv() {
    rm -rf "$1"
    if [[ -x $VENV/bin/uv ]]; then
        "$VENV/bin/uv" venv -q --python "$(find_python)" "$1"
    else
        "$(find_python)" -m venv "$1"
    fi
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
