#!/usr/bin/env bash
# Set up the project in .venv (once) and run one of:
#   ./dev.sh demo    start the embedded stack and analyze the sample site
#   ./dev.sh test    run the test suite
#   ./dev.sh up      start the whole stack in the foreground
#   ./dev.sh bench   run the benchmarks (add --quick for the smoke size)
set -euo pipefail
cd "$(dirname "$0")"

pick_python() {
  # The Temporal SDK validates workflows reliably from Python 3.12 on; 3.11 works but can flake at start-up.
  for candidate in "${PYTHON:-}" python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python" python3.13 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "PagePerfect needs Python 3.11 or newer" >&2; exit 1
}

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$(pick_python)" -m venv .venv
  fi
  local stamp=.venv/.installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[test]"
    # shellcheck disable=SC2046  # one argument per package
    .venv/bin/python -m pip install --quiet --no-deps $(.venv/bin/python -c \
      'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["pageperfect"]["no-deps"]))')
    touch "$stamp"
  fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
  demo)  setup; exec .venv/bin/pageperfect demo "$@" ;;
  up)    setup; exec .venv/bin/pageperfect up "$@" ;;
  # PYTHONDONTWRITEBYTECODE, where the machine sets it, would make every interpreter of the suite (pytest, its
  # xdist workers, the hundreds of processes tests start) compile the project from source again: the tests keep
  # Python's usual bytecode cache (__pycache__/, git-ignored), written once and checked against each file's mtime.
  test)  setup; unset PYTHONDONTWRITEBYTECODE; exec .venv/bin/python -m pytest "$@" ;;
  bench) setup; exec .venv/bin/python -m bench "$@" ;;
  setup) setup ;;
  *) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
