"""The kind target: a check's questions answered by kubectl and istioctl against a real cluster.

Everything the cluster is asked goes through one small runner that executes
`kubectl --context CTX ...` with a fixed argument list and a timeout, and turns the three ways a
cluster cannot answer at all (no kubectl, no such context, no reachable API server) into a
TargetUnavailable that says what to do. What comes back is read by pure functions that the tests
feed with recorded documents.

Modules, one concern each (HTTP from this machine, shared with the sandbox target, is
istiolab.targets.http):

- target: KindTarget, and how it answers each question.
- runner: Runner (kubectl/istioctl with a timeout), CommandFailed, classify_failure, and the
  default context and istioctl.
- layout: where things are: the repository's manifests and .bin/, the cluster's namespaces, the
  client's and the sidecar's names.
- resources: kinds as kubectl's fully qualified resource names (resource_name).
- workloads: parse_workloads, selector_matches, sidecar and restart counting from pods.
- clients: the in-cluster client commands (curl_command, python_command and PYTHON_CLIENT),
  parse_client_output, qualify_url.
- telemetry: parse_prometheus_vector, tracing_backend, jaeger_to_zipkin, parse_zipkin_traces.
- proxy_status: parse_proxy_status_table and parse_proxy_status_json (istioctl proxy-status).
- port_forward: `kubectl port-forward` for a block (port_forward, free_port).
"""

from .target import KindTarget

__all__ = ["KindTarget"]
