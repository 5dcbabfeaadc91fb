#!/usr/bin/env bash
# From a fresh clone to Bookinfo in your browser: set up .venv, then run all four services.
# Usage: ./scripts/quickstart.sh [--reviews v1|v2|v3] [--port PORT]
#   --reviews v3 shows red stars, v2 black stars, v1 (default) none.
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/python-env.sh
source scripts/lib/python-env.sh

main() {
  ensure_venv
  echo "==> Starting Bookinfo (no mesh yet); open the productpage URL below."
  # exec: Ctrl-C and SIGTERM go straight to Bookinfo, which stops its four services cleanly.
  exec .venv/bin/python -m bookinfo serve-all "$@"
}

main "$@"
