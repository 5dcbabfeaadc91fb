#!/usr/bin/env bash
# From a fresh clone to Bookinfo in a service mesh: set up .venv, then start the sandbox mesh
# (Bookinfo as local processes, real Envoy proxies, a control plane that reads Istio's YAML).
# Usage: ./scripts/quickstart.sh [--gateway-port PORT] [--port-forward-port PORT]
#                                [--zipkin-port PORT] [--metrics-port PORT]
#   (the options of `istiolab up`: where the ingress gateway, productpage, the trace collector
#   and the request metrics listen)
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/python-env.sh
source scripts/lib/python-env.sh

main() {
  ensure_venv
  echo "==> Starting the sandbox mesh: Bookinfo behind real Envoy proxies"
  .venv/bin/python -m istiolab up "$@"
  cat <<'NEXT'

Next steps:
  .venv/bin/istiolab status     the pods, their sidecars and restarts
  .venv/bin/istiolab down       stop it all when you are done
  docs/sandbox.md               what runs, and the kubectl-shaped commands to configure it
Bookinfo without any mesh instead: .venv/bin/python -m bookinfo serve-all --reviews v3
NEXT
}

main "$@"
