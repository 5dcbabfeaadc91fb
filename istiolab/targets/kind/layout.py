"""Where the kind target finds things: in this repository, and in the lab's cluster.

The cluster side is the course's convention (manifests/, scripts/cluster-up.sh): Istio in
istio-system, Bookinfo and the in-mesh curl client in default, a client without a sidecar in
outside.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CLIENTS_DIR = REPO_ROOT / "manifests" / "clients"

ISTIO_NAMESPACE = "istio-system"
MESH_NAMESPACE = "default"  # where Bookinfo and the in-mesh client run
OUTSIDE_NAMESPACE = "outside"  # injection disabled: a client there has no sidecar
CLIENT = "curl"  # the client Deployment, its container and its ServiceAccount
SIDECAR = "istio-proxy"
