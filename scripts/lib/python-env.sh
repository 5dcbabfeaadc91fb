# shellcheck shell=bash
# Shared by quickstart.sh and test.sh: find Python 3.11 or newer and keep .venv installed.
# Source it; it defines functions and changes nothing by itself.

# The interpreter to build .venv with: $PYTHON if set, else the first python3.X >= 3.11 found.
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [[ -n "${candidate}" ]] || continue
    command -v "${candidate}" >/dev/null 2>&1 || continue
    if "${candidate}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "${candidate}"
      return 0
    fi
  done
  echo "error: Python 3.11 or newer is needed and none was found." >&2
  echo "  Debian/Ubuntu: sudo apt-get install python3 python3-venv" >&2
  echo "  macOS:         brew install python@3.12" >&2
  echo "  or point PYTHON at one: PYTHON=/path/to/python3.12 $0" >&2
  return 1
}

# ensure_venv [EXTRAS]: create .venv if needed and install this project into it (editable), with
# the given extras (e.g. "dev"). Skips the install when pyproject.toml and the extras are unchanged.
ensure_venv() {
  local extras="${1:-}" python stamp wanted spec
  if [[ ! -x .venv/bin/python ]]; then
    python=$(find_python) || return 1
    echo "==> Creating .venv with $("${python}" --version)"
    if ! "${python}" -m venv .venv; then
      echo "error: could not create .venv; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2
      return 1
    fi
  fi
  stamp=.venv/.istiolab-installed
  wanted="$(cksum < pyproject.toml) extras=${extras}"
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]]; then
    return 0
  fi
  spec="."
  [[ -z "${extras}" ]] || spec=".[${extras}]"
  echo "==> Installing istiolab${extras:+ with [${extras}]} into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet --editable "${spec}"
  echo "${wanted}" > "${stamp}"
}
