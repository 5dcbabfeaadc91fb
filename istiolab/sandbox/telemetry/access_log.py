"""The JSON access log each sandbox proxy writes, and reading its lines back.

istio-proxy counts requests inside Envoy, in its `istio.stats` filter, which stock Envoy does not
have. What that filter looks at is all available to Envoy's access log, though: the response code
and flags, the upstream host and cluster, the peer certificates. So every listener that Istio
would count writes one JSON line per request with those values (`envoy_access_log`), and
metrics.py counts the lines. Istio's own JSON access log (`meshConfig.accessLogEncoding: JSON`)
names its fields the same way: `response_code`, `upstream_cluster`, `authority`, ...

Two values Envoy cannot know are written into each logger's configuration as literals:
`reporter` (Istio's label: "source" for a client-side proxy, "destination" for a server-side one)
and `proxy_id`, the proxy's node id, which says which workload reported.

Who called? istio-proxy learns the caller's workload through its metadata exchange. In the sandbox
each outbound sidecar and the gateway add their node id to the requests they send in the
PEER_HEADER header, and the inbound sidecar logs it.

Envoy 1.40 writes numbers (`response_code`, `duration`, byte counts) as JSON numbers and a
value it does not have (no upstream host, no peer certificate) as null; `response_flags` is "-"
when there are none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

PEER_HEADER = "x-envoy-peer-metadata-id"
SOURCE = "source"
DESTINATION = "destination"
REPORTERS = (SOURCE, DESTINATION)
LOG_SUFFIX = ".jsonl"

# Field -> Envoy command operator (Envoy's "Access logging" docs). Istio's JSON format uses these
# names for the fields both have.
FIELDS: dict[str, str] = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "grpc_status": "%GRPC_STATUS_NUMBER%",
    "content_type": "%REQ(CONTENT-TYPE)%",
    "duration": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "authority": "%REQ(:AUTHORITY)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "peer_metadata_id": f"%REQ({PEER_HEADER.upper()})%",
    "downstream_peer_uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
    "downstream_local_uri_san": "%DOWNSTREAM_LOCAL_URI_SAN%",
    "downstream_tls_version": "%DOWNSTREAM_TLS_VERSION%",
    "upstream_peer_uri_san": "%UPSTREAM_PEER_URI_SAN%",
    "upstream_local_uri_san": "%UPSTREAM_LOCAL_URI_SAN%",
}


def envoy_access_log(
    path: str | os.PathLike[str], *, reporter: str, proxy_id: str
) -> dict[str, Any]:
    """An Envoy access_log entry (envoy.access_loggers.file with log_format.json_format) writing
    one JSON line per request to `path`, with the fields metrics.py needs.

    `reporter` is "source" for a sidecar's outbound (HTTP-proxy) listener and the ingress
    gateway, "destination" for a sidecar's inbound listener; `proxy_id` is the proxy's node id.
    """
    if reporter not in REPORTERS:
        raise ValueError(f"reporter must be one of {REPORTERS}, not {reporter!r}")
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {
                "json_format": {**FIELDS, "reporter": reporter, "proxy_id": proxy_id},
            },
        },
    }


@dataclass(frozen=True)
class AccessLogEntry:
    """One request as one proxy saw it: a line of the JSON access log, with absent values None."""

    reporter: str
    proxy_id: str
    response_code: int
    response_flags: str = "-"
    duration_ms: float = 0.0
    bytes_received: int = 0
    bytes_sent: int = 0
    upstream_host: str | None = None
    upstream_cluster: str | None = None
    authority: str | None = None
    peer_metadata_id: str | None = None
    downstream_peer_uri_san: str | None = None
    downstream_local_uri_san: str | None = None
    upstream_peer_uri_san: str | None = None
    upstream_local_uri_san: str | None = None
    grpc_status: str | None = None
    content_type: str | None = None

    def identity(self) -> tuple[str | int | None, ...]:
        """Everything the labels depend on (not durations or sizes): a key to cache them by."""
        return (
            self.reporter,
            self.proxy_id,
            self.response_code,
            self.response_flags,
            self.upstream_host,
            self.upstream_cluster,
            self.authority,
            self.peer_metadata_id,
            self.downstream_peer_uri_san,
            self.downstream_local_uri_san,
            self.upstream_peer_uri_san,
            self.upstream_local_uri_san,
            self.grpc_status,
            self.content_type,
        )


def parse_entry(line: str | bytes) -> AccessLogEntry:
    """One line of the log as an entry; ValueError for a line that is not one (not JSON, or no
    reporter, proxy_id or response code)."""
    try:
        fields = json.loads(line)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    reporter = _text(fields.get("reporter"))
    proxy_id = _text(fields.get("proxy_id"))
    if reporter not in REPORTERS or not proxy_id:
        raise ValueError("no reporter or proxy_id: not a line of envoy_access_log's format")
    return AccessLogEntry(
        reporter=reporter,
        proxy_id=proxy_id,
        response_code=_number(fields.get("response_code")),
        response_flags=_text(fields.get("response_flags")) or "-",
        duration_ms=float(_number(fields.get("duration"))),
        bytes_received=_number(fields.get("bytes_received")),
        bytes_sent=_number(fields.get("bytes_sent")),
        upstream_host=_text(fields.get("upstream_host")),
        upstream_cluster=_text(fields.get("upstream_cluster")),
        authority=_text(fields.get("authority")),
        peer_metadata_id=_text(fields.get("peer_metadata_id")),
        downstream_peer_uri_san=_text(fields.get("downstream_peer_uri_san")),
        downstream_local_uri_san=_text(fields.get("downstream_local_uri_san")),
        upstream_peer_uri_san=_text(fields.get("upstream_peer_uri_san")),
        upstream_local_uri_san=_text(fields.get("upstream_local_uri_san")),
        grpc_status=_text(fields.get("grpc_status")),
        content_type=_text(fields.get("content_type")),
    )


def _text(value: object) -> str | None:
    """Envoy's "no value" (null, or "-" in text formats) as None; anything else as text."""
    if value is None:
        return None
    text = str(value)
    return None if text in ("", "-") else text


def _number(value: object) -> int:
    """A number Envoy wrote as a JSON number (or as text); 0 when it wrote none."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(str(value))
    except ValueError:
        return 0
