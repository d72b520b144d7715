# Sourced by scripts/run, scripts/test, scripts/bench and scripts/lock: make sure the venv exists,
# runs a Python >= 3.12 and has the project installed as pyproject.toml describes it now, at the
# versions pinned in the lock (requirements.lock, refreshed on purpose by scripts/lock).
# Sets VENV, LOCK and ROOT. Prints progress on stderr, so stdout stays the caller's.
#
# USAGEFIX_VENV and USAGEFIX_LOCK choose another venv and lock (.ci/run uses them to test the
# oldest mitmproxy line the pins allow, in a venv of its own).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${USAGEFIX_VENV:-$ROOT/.venv}"
LOCK="${USAGEFIX_LOCK:-$ROOT/requirements.lock}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
case "$LOCK" in /*) ;; *) LOCK="$ROOT/$LOCK" ;; esac

_usagefix_py_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

_usagefix_find_python() {
    local c
    # Explicit choice first, then PATH, then pyenv's installs (its shims fail for versions
    # that are installed but not selected, so look at the interpreters themselves).
    for c in "${USAGEFIX_PYTHON:-}" python3.14 python3.13 python3.12 python3 python; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1 && _usagefix_py_ok "$c"; then
            command -v "$c"; return 0
        fi
    done
    local root="${PYENV_ROOT:-$HOME/.pyenv}"
    for c in $(ls -d "$root"/versions/3.* 2>/dev/null | sort -rV); do
        if [ -x "$c/bin/python" ] && _usagefix_py_ok "$c/bin/python"; then
            echo "$c/bin/python"; return 0
        fi
    done
    return 1
}

# pip, without the warnings this machine's pip config makes about its local extra indexes
# ("Location 'file:///...' is ignored") for every package they do not hold.
_usagefix_pip() {
    local py="$1"
    shift
    "$py" -m pip --disable-pip-version-check "$@" \
        2> >(grep -v -E "^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory\.$" >&2)
}

# Names as pip compares them (PEP 503): lower case, runs of -_. as one -.
_usagefix_names() {
    sed -e 's/[[:space:]]*#.*//' -e '/^$/d' -e 's/[=<>!~ ;@].*//' | tr 'A-Z_.' 'a-z--' | sed 's/--*/-/g' | sort -u
}

_usagefix_ensure_venv() {
    local extras="$1"
    if [ ! -f "$LOCK" ]; then
        echo "usagefix: no lock file at $LOCK (scripts/lock makes one)" >&2
        exit 1
    fi
    if [ ! -x "$VENV/bin/python" ] || ! _usagefix_py_ok "$VENV/bin/python"; then
        local py
        if ! py="$(_usagefix_find_python)"; then
            echo "usagefix: no Python >= 3.12 found on PATH or under pyenv (${PYENV_ROOT:-$HOME/.pyenv})." >&2
            echo "usagefix: install one, or point USAGEFIX_PYTHON at it." >&2
            exit 1
        fi
        echo "usagefix: creating $VENV with $py" >&2
        rm -rf "$VENV"
        "$py" -m venv "$VENV" || { echo "usagefix: could not create $VENV" >&2; exit 1; }
    fi
    # Reinstall only when pyproject.toml or the lock changed, or extras are asked for that are
    # not there (an install with the test extras serves scripts/run too).
    local stamp="$VENV/.usagefix-installed"
    local hash want
    hash="$(cat "$ROOT/pyproject.toml" "$LOCK" | sha256sum | cut -d' ' -f1)"
    want="$hash $extras"
    local have=""
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ "$have" != "$want" ] && { [ -n "$extras" ] || [ "${have%% *}" != "$hash" ]; }; then
        echo "usagefix: installing the project into $VENV (${extras:-no extras}) at the versions in ${LOCK#"$ROOT"/}" >&2
        local spec="$ROOT"
        [ -n "$extras" ] && spec="$ROOT[$extras]"
        # The lock is a constraints file: it pins versions, pyproject.toml says what is needed.
        _usagefix_pip "$VENV/bin/python" install --quiet -c "$LOCK" -e "$spec" \
            || { echo "usagefix: pip install failed" >&2; exit 1; }
        # A dependency the lock does not pin was resolved afresh: the install is not the one CI
        # was green with. Say so, and stop.
        local unpinned
        unpinned="$(comm -23 \
            <(_usagefix_pip "$VENV/bin/python" freeze --exclude-editable | _usagefix_names) \
            <(_usagefix_names < "$LOCK"))"
        if [ -n "$unpinned" ]; then
            echo "usagefix: ${LOCK#"$ROOT"/} does not pin:" $unpinned >&2
            echo "usagefix: pyproject.toml asks for more than the lock knows: run scripts/lock, and commit the lock." >&2
            exit 1
        fi
        echo "$want" > "$stamp"
    fi
}
