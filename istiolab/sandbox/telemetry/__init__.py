"""The sandbox's telemetry: a Zipkin collector for traces, and Istio's request metrics.

On a cluster, Istio's addons collect what the proxies report: Jaeger or Zipkin receives the spans
each Envoy sends, and Prometheus scrapes the `istio_requests_*` metrics that istio-proxy's
`istio.stats` filter counts inside every Envoy. The sandbox runs stock Envoy, which has no
`istio.stats` (reference section 6.4), so one small process, `python -m
istiolab.sandbox.telemetry`, stands in for both:

- zipkin.py, spans.py: a Zipkin v2 API on 127.0.0.1:9411. Every proxy's tracer
  (`envoy.tracers.zipkin`) posts its spans to `/api/v2/spans`; `istiolab traces`, a lab check or
  the learner's own curl reads them back with Zipkin's query API.
- access_log.py, follower.py, counter.py, workloads.py, metrics.py: every proxy writes one JSON
  line per request to `<state-dir>/telemetry/<proxy>.jsonl`; the process follows those files and
  counts each request as `istio.stats` would, with Istio's labels (who called whom, the response
  code and flags, mTLS or not), served in Prometheus' text format at `/stats/prometheus`. The
  control plane describes the workloads (which proxy and which address belong to which
  Deployment) in `<state-dir>/telemetry/workloads.json`.
- server.py, __main__.py: the two HTTP servers and the process around them.
- client.py: what the `istiolab` command and the sandbox target use to read both back.
"""

from pathlib import Path

TELEMETRY_DIR = "telemetry"  # under the sandbox's state directory
WORKLOADS_FILE = "workloads.json"


def telemetry_dir(state_dir: Path) -> Path:
    """Where the proxies write their JSON access logs and the control plane its workloads file."""
    return Path(state_dir) / TELEMETRY_DIR
