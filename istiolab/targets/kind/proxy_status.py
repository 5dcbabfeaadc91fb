"""What `istioctl proxy-status` says: each proxy istiod knows, with the xDS types it is stale on.

Both forms are read: the table every istioctl prints, and the JSON of `--output json`.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Columns of `istioctl proxy-status` that are not an xDS type's sync status.
_NOT_STATUS_COLUMNS = {"NAME", "PROXY", "CLUSTER", "ISTIOD", "PILOT", "VERSION", "SUBSCRIBED TYPES"}
_XDS_TYPES = {
    "envoy.config.cluster.v3.Cluster": "CDS",
    "envoy.config.listener.v3.Listener": "LDS",
    "envoy.config.route.v3.RouteConfiguration": "RDS",
    "envoy.config.endpoint.v3.ClusterLoadAssignment": "EDS",
    "envoy.config.core.v3.TypedExtensionConfig": "ECDS",
}


def _is_stale(status: str) -> bool:
    """STALE (sent, not acknowledged), ERROR or NACKED (rejected); SYNCED, NOT SENT, IGNORED and
    UNKNOWN are not waiting for anything."""
    status = status.strip().upper()
    return status.startswith(("STALE", "ERROR")) or "NACK" in status


def _proxy_name(node_id: str) -> str:
    """Istio node IDs look like "sidecar~10.244.0.7~productpage-v1-5d7b.default~default.svc...";
    istioctl prints the "pod.namespace" part."""
    parts = node_id.split("~")
    return parts[2] if len(parts) >= 4 else node_id


def parse_proxy_status_table(text: str) -> dict[str, list[str]]:
    """Each proxy of `istioctl proxy-status`'s table, with its stale xDS types ("RDS STALE").

    The table is tabwriter output: every cell starts at its header's column, and cells may hold
    single spaces ("NOT SENT", "STALE (Never Acknowledged)"), so cells are cut by position.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.split()[0] in {"NAME", "PROXY"}), None)
    if start is None:
        return {}
    header = lines[start]
    columns = [(m.group(0), m.start()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    proxies: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        cells = {}
        for index, (column, begin) in enumerate(columns):
            end = columns[index + 1][1] if index + 1 < len(columns) else len(line)
            cells[column] = line[begin:end].strip()
        name = cells[columns[0][0]]
        proxies[name] = [
            f"{column} {value}"
            for column, value in cells.items()
            if column not in _NOT_STATUS_COLUMNS and _is_stale(value)
        ]
    return proxies


def _json_documents(text: str) -> list[Any]:
    """Every JSON value in `text`, for output that prints one document per control plane."""
    decoder = json.JSONDecoder()
    documents, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return documents
        document, index = decoder.raw_decode(text, index)
        documents.append(document)


def parse_proxy_status_json(text: str) -> dict[str, list[str]] | None:
    """Each proxy of `istioctl proxy-status -o json`, with its stale xDS types.

    Reads the Envoy CSDS ClientConfig form (node.id plus genericXdsConfigs[].configStatus) and
    Istio's sync-status form (proxy plus <type>_sent/<type>_acked nonces), wherever they sit in
    the document. None when the text is not JSON or holds neither form.
    """
    try:
        documents = _json_documents(text)
    except ValueError:
        return None
    proxies: dict[str, list[str]] = {}

    def visit(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                visit(item)
            return
        if not isinstance(value, dict):
            return
        if "genericXdsConfigs" in value and isinstance(value.get("node"), dict):
            stale = []
            for config in value.get("genericXdsConfigs") or []:
                type_url = str(config.get("typeUrl", "")).rpartition("/")[2]
                name = _XDS_TYPES.get(type_url, type_url.rpartition(".")[2] or type_url)
                status = str(config.get("configStatus", ""))
                if str(config.get("clientStatus", "")).endswith("NACKED"):
                    stale.append(f"{name} NACKED")  # the proxy rejected what it was sent
                elif _is_stale(status):
                    stale.append(f"{name} {status}")
            proxies[_proxy_name(str(value["node"].get("id", "")))] = stale
            return
        if "proxy" in value and any(str(key).endswith("_sent") for key in value):
            stale = []
            for key in sorted(value):
                if not str(key).endswith("_sent"):
                    continue
                prefix = str(key)[: -len("_sent")]
                sent, acked = value.get(key) or "", value.get(f"{prefix}_acked") or ""
                if sent and sent != acked:
                    stale.append(f"{prefix} STALE")
            proxies[_proxy_name(str(value["proxy"]))] = stale
            return
        for item in value.values():
            visit(item)

    visit(documents)
    return proxies or None
