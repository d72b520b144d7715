# Sourced by scripts/run, scripts/test and scripts/bench: make sure .venv exists, runs a
# Python >= 3.12 and has the project installed as it is described by pyproject.toml now.
# Sets VENV and ROOT. Prints progress on stderr, so stdout stays the caller's.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

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

_usagefix_ensure_venv() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ] || ! _usagefix_py_ok "$VENV/bin/python"; then
        local py
        if ! py="$(_usagefix_find_python)"; then
            echo "usagefix: no Python >= 3.12 found on PATH or under pyenv (${PYENV_ROOT:-$HOME/.pyenv})." >&2
            echo "usagefix: install one, or point USAGEFIX_PYTHON at it." >&2
            exit 1
        fi
        echo "usagefix: creating .venv with $py" >&2
        rm -rf "$VENV"
        "$py" -m venv "$VENV" || { echo "usagefix: could not create $VENV" >&2; exit 1; }
    fi
    # Reinstall only when pyproject.toml changed or extras are asked for that are not there
    # (an install with the test extras serves scripts/run too).
    local stamp="$VENV/.usagefix-installed"
    local hash want
    hash="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    want="$hash $extras"
    local have=""
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ "$have" != "$want" ] && { [ -n "$extras" ] || [ "${have%% *}" != "$hash" ]; }; then
        echo "usagefix: installing the project into .venv ($extras)" >&2
        local spec="$ROOT"
        [ -n "$extras" ] && spec="$ROOT[$extras]"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" \
            || { echo "usagefix: pip install failed" >&2; exit 1; }
        echo "$want" > "$stamp"
    fi
}
