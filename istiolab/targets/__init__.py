"""Where the mesh runs. A lab check asks a Target; it never calls kubectl or Envoy itself.

- kind: a local kind cluster (or any cluster, with --context) running real Istio.
- sandbox: Bookinfo as local processes behind real Envoy sidecars, configured from the same YAML.
- http: HTTP from this machine, as both send it (http_request, fetch_json).
"""

from .base import HttpResult, MetricSample, Target, TargetUnavailable, Workload

__all__ = ["HttpResult", "MetricSample", "Target", "TargetUnavailable", "Workload"]
