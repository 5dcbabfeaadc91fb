"""Configuration for a running Envoy, delivered as files it watches instead of over gRPC.

Each proxy has its own directory of xDS files. The bootstrap (bootstrap.py) points Envoy's
dynamic resources at them:

    lds.json              every Listener             (dynamic_resources.lds_config)
    cds.json              every Cluster              (dynamic_resources.cds_config)
    rds_<name>.json       one RouteConfiguration     (the `rds.config_source` of each HTTP
                                                      connection manager that uses <name>)

Each file holds what an xDS server would send, a DiscoveryResponse:
`{"version_info": "7", "type_url": ..., "resources": [{"@type": ..., ...}, ...]}`.

Envoy (1.40, checked) watches each file's directory for a rename onto the file's name, so a file
is replaced atomically: written in full to a temporary file in the same directory, then renamed
over the old one. Envoy never sees half a file, and a running Envoy switches without a restart.
After reading a file it either applies it (its `*.version_text` stat becomes the file's
`version_info`: an ACK) or keeps the previous configuration and counts `update_rejected` or
`update_failure` (a NACK); admin.py reads both.

Two Envoy rules shape this layout:
- An RDS file must hold exactly one RouteConfiguration, named as the subscription expects;
  a file with two is rejected whole. Hence one file per route configuration name.
- A listener whose RDS file does not exist yet is rejected (and not retried when the file
  appears). Hence `write_all` writes clusters, then route configurations, then listeners:
  everything a resource refers to exists before the resource does, as an xDS server orders
  its pushes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..files import write_json_atomically

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_CONFIGURATION_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

LDS_FILE = "lds.json"
CDS_FILE = "cds.json"

_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def lds_path(xds_dir: str | os.PathLike[str]) -> Path:
    return Path(xds_dir) / LDS_FILE


def cds_path(xds_dir: str | os.PathLike[str]) -> Path:
    return Path(xds_dir) / CDS_FILE


def rds_path(xds_dir: str | os.PathLike[str], route_config_name: str) -> Path:
    """The file holding the route configuration `route_config_name` (`http_proxy`, `http.8080`)."""
    if not route_config_name:
        raise ValueError("a route configuration needs a name")
    safe = _UNSAFE_IN_FILE_NAME.sub("_", route_config_name)
    return Path(xds_dir) / f"rds_{safe}.json"


def config_source(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ConfigSource reading a DiscoveryResponse from `path`, read again when it is replaced."""
    return {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"}


def rds_config_source(xds_dir: str | os.PathLike[str], route_config_name: str) -> dict[str, Any]:
    """The `rds` block of an HTTP connection manager reading `route_config_name` from its file."""
    return {
        "route_config_name": route_config_name,
        "config_source": config_source(rds_path(xds_dir, route_config_name)),
    }


def discovery_response(
    version: str, type_url: str, resources: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """What an xDS server would send: every resource with its `@type`, and the version."""
    typed = []
    for resource in resources:
        declared = resource.get("@type", type_url)
        if declared != type_url:
            raise ValueError(f"a {declared} resource cannot go in a {type_url} response")
        typed.append({"@type": type_url, **{k: v for k, v in resource.items() if k != "@type"}})
    return {"version_info": str(version), "type_url": type_url, "resources": typed}


def write_atomically(path: str | os.PathLike[str], document: Mapping[str, Any]) -> Path:
    """Write `document` as JSON to `path` so that Envoy reads the old file or the new one, whole
    (files.py); readable by its owner only, as some hold private keys (sds_files.py)."""
    return write_json_atomically(path, document)


def write_listeners(
    xds_dir: str | os.PathLike[str], version: str, listeners: Iterable[Mapping[str, Any]]
) -> Path:
    return write_atomically(
        lds_path(xds_dir), discovery_response(version, LISTENER_TYPE, listeners)
    )


def write_clusters(
    xds_dir: str | os.PathLike[str], version: str, clusters: Iterable[Mapping[str, Any]]
) -> Path:
    return write_atomically(cds_path(xds_dir), discovery_response(version, CLUSTER_TYPE, clusters))


def write_route_config(
    xds_dir: str | os.PathLike[str], version: str, route_config: Mapping[str, Any]
) -> Path:
    """One RouteConfiguration, in the file named after it (an RDS file holds exactly one)."""
    return write_atomically(
        rds_path(xds_dir, route_config["name"]),
        discovery_response(version, ROUTE_CONFIGURATION_TYPE, [route_config]),
    )


def write_all(
    xds_dir: str | os.PathLike[str],
    version: str,
    *,
    listeners: Iterable[Mapping[str, Any]],
    clusters: Iterable[Mapping[str, Any]],
    route_configs: Iterable[Mapping[str, Any]] = (),
) -> list[Path]:
    """A proxy's whole configuration at `version`: clusters, then routes, then listeners.

    Every file gets the new version even if its content is unchanged: Envoy applies identical
    content as a no-op but still reports the version, so "every proxy is on version N" is one
    check. Route configuration files no longer written are left in place: Envoy stops reading
    them once no listener names them.
    """
    Path(xds_dir).mkdir(parents=True, exist_ok=True)
    written = [write_clusters(xds_dir, version, clusters)]
    names: set[str] = set()
    for route_config in route_configs:
        if route_config["name"] in names:
            raise ValueError(f"two route configurations are named {route_config['name']!r}")
        names.add(route_config["name"])
        written.append(write_route_config(xds_dir, version, route_config))
    written.append(write_listeners(xds_dir, version, listeners))
    return written


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A DiscoveryResponse file as written (for `proxy-config`-style views and tests)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
