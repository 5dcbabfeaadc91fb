#!/usr/bin/env bash
# Set up everything the tests need, then run the whole test suite: lint, then pytest.
# Usage: ./scripts/test.sh [PYTEST_ARGS...]   e.g. ./scripts/test.sh -k productpage -x
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/python-env.sh
source scripts/lib/python-env.sh
# shellcheck source=scripts/lib/system-deps.sh
source scripts/lib/system-deps.sh

main() {
  ensure_venv dev
  ensure_chromium
  ensure_actionlint

  echo "==> ruff"
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .

  echo "==> pytest"
  # Tests mostly wait on sockets and timeouts, so more workers than cores pays off. loadfile
  # keeps each test file on one worker, in order: the sandbox's end-to-end tests build on each
  # other like the steps of a task, and share one sandbox.
  .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-4}" --dist loadfile "$@"
}

main "$@"
