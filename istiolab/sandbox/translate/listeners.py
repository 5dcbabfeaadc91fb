"""The listeners of each proxy (LDS), as istiod builds them for the shapes the sandbox uses.

Every listener binds 127.0.0.1: nothing in the sandbox is reachable from another machine.

A sidecar has two (reference section 7):
- `127.0.0.1_<outbound_port>`, its HTTP-proxy listener: the app's HTTP_PROXY, Istio's
  `proxyHttpPort` mode. It accepts absolute-form requests (`GET http://reviews:9080/x`) and
  routes them with the route configuration `http_proxy` (every Service on every port), which it
  reads from its file (xds_files.rds_path).
- `127.0.0.1_<inbound_port>`, its inbound listener, in front of the app: what a Service's
  endpoint points at, where Kubernetes would redirect the pod's port 9080 to Envoy with
  iptables. Bound for real, as istiod builds it for a Sidecar ingress listener with
  captureMode NONE (`<bind>_<port>`, no `virtualInbound`), with an inline route configuration
  `inbound|<port>||` to the cluster of the same name, i.e. to the app.

The ingress gateway has one per port its Gateway resources open, `0.0.0.0_8080`, routing with
`http.8080` (the route configurations are routes.py's). The name is what istiod gives a Gateway
server that has no `bind`, the form Istio's docs and `proxy-config` output show; the address is
127.0.0.1 all the same, on `Gateway.port` for the gateway pod's port 8080.

Without a sidecar, an app's HTTP_PROXY is the kube-proxy stand-in (`kube_proxy_listener`): an
HTTP proxy with one virtual host per Service port and nothing Istio adds, no retries, no
timeouts, no request IDs, no `x-envoy-*` headers.

Each HTTP connection manager carries Istio's settings (stat prefix `<direction>_<name>`, path
normalisation, websocket upgrades, no stream idle timeout, UUID request IDs) and Istio's HTTP
filters that stock Envoy has: fault and CORS (routes turn them on per route), then the router.
Access logs, when asked for, use Istio's default text format; a second access log, in JSON,
feeds the sandbox's request metrics (telemetry/access_log.py). Tracing follows the Telemetry
API (tracing.py).

Security lives on the inbound side: the inbound listener's filter chains follow the workload's
PeerAuthentication (mtls.py: mTLS only, mTLS or plaintext, plaintext only), and its connection
manager runs the AuthorizationPolicy RBAC filters (authorization.py) before any other. The
ingress gateway runs the RBAC filters of the policies that select it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from ..envoy import xds_files
from ..model import Gateway, Mesh, Pod, Service, SidecarPorts
from ..telemetry import access_log as telemetry_log
from . import authorization, clusters, mtls, names, peer_authentication, routes, tracing

HCM = "envoy.filters.network.http_connection_manager"
_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
HTTP_PROXY_ROUTE_CONFIG = "http_proxy"  # istiod's model.RDSHttpProxy
GATEWAY_HTTP_PORT = 8080  # the istio-ingressgateway pod's HTTP port (its Service's port 80)
KUBE_PROXY_ROUTE_CONFIG = "kube-proxy"

# Istio's default access log format (model.EnvoyTextLogFormat), meshConfig.accessLogEncoding TEXT.
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)

_ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
_ISTIO_HTTP_FILTERS = (
    {
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
        },
    },
    {
        "name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
    },
    _ROUTER,
)
_UUID_REQUEST_ID = {
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
        "use_request_id_for_trace_sampling": True,
    }
}
_SERVER_NAME = "istio-envoy"  # what Istio's inbound and gateway listeners call themselves


def listener_name(address: str, port: int) -> str:
    """istiod's getListenerName: 127.0.0.1_15001, 0.0.0.0_8080."""
    return f"{address}_{port}"


def access_log(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Envoy's file access logger writing Istio's default text format to `path`."""
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
        },
    }


def sidecar_listeners(
    pod: Pod,
    xds_dir: str | os.PathLike[str],
    *,
    mesh: Mesh | None = None,
    access_log_path: str | os.PathLike[str] | None = None,
    telemetry_log_path: str | os.PathLike[str] | None = None,
    node_id: str = "",
    sds_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Both listeners of a pod's sidecar: the HTTP proxy its app calls through, and its inbound.

    `telemetry_log_path` is where the JSON access log for the request metrics goes, `node_id`
    the proxy's node id written in it; `sds_dir` holds the workload's certificate (without one
    the sidecar cannot do mTLS).
    """
    return [
        http_proxy_listener(
            pod,
            xds_dir,
            mesh=mesh,
            access_log_path=access_log_path,
            telemetry_log_path=telemetry_log_path,
            node_id=node_id,
        ),
        inbound_listener(
            pod,
            mesh=mesh,
            access_log_path=access_log_path,
            telemetry_log_path=telemetry_log_path,
            node_id=node_id,
            sds_dir=sds_dir,
        ),
    ]


def http_proxy_listener(
    pod: Pod,
    xds_dir: str | os.PathLike[str],
    *,
    mesh: Mesh | None = None,
    access_log_path: str | os.PathLike[str] | None = None,
    telemetry_log_path: str | os.PathLike[str] | None = None,
    node_id: str = "",
) -> dict[str, Any]:
    """127.0.0.1:<outbound_port>, the app's HTTP_PROXY, routing with `http_proxy` from its file."""
    port = _sidecar(pod).outbound_port
    name = listener_name(pod.address, port)
    hcm = _connection_manager(
        f"outbound_{name}",
        access_log_path=access_log_path,
        use_remote_address=False,
        telemetry=_telemetry_log(telemetry_log_path, "source", node_id),
        tracing=_tracing(mesh, pod.namespace, pod.labels, _canonical_service(pod)),
    )
    hcm["http_protocol_options"] = {"allow_absolute_url": True}
    hcm["rds"] = xds_files.rds_config_source(xds_dir, HTTP_PROXY_ROUTE_CONFIG)
    return _listener(name, pod.address, port, "OUTBOUND", hcm)


def inbound_listener(
    pod: Pod,
    *,
    mesh: Mesh | None = None,
    access_log_path: str | os.PathLike[str] | None = None,
    telemetry_log_path: str | os.PathLike[str] | None = None,
    node_id: str = "",
    sds_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """127.0.0.1:<inbound_port>, in front of the app, always routing to `inbound|<port>||`.

    The route is istiod's default inbound route: no timeout, and (since Istio 1.31) a retry only
    for requests the app reset before answering anything. Its filter chains follow the port's
    PeerAuthentication mode, and its RBAC filters the AuthorizationPolicies that select the pod.
    """
    port = clusters.inbound_port(pod, mesh)
    cluster = names.inbound_cluster(port)
    service = next(iter(clusters.services_of(mesh, pod)), None) if mesh is not None else None
    operation = names.decorator(service.fqdn if service else pod.name, port)
    route: dict[str, Any] = {
        "cluster": cluster,
        "timeout": "0s",
    }
    if not _is_grpc(service):
        route["retry_policy"] = {"retry_on": "reset-before-request", "num_retries": 2}
    route_config = {
        "name": cluster,
        "validate_clusters": False,
        "virtual_hosts": [
            {
                "name": f"inbound|http|{port}",
                "domains": ["*"],
                "routes": [
                    {
                        "name": "default",
                        "match": {"prefix": "/"},
                        "decorator": {"operation": operation},
                        "route": route,
                    }
                ],
            }
        ],
    }
    inbound_port = _sidecar(pod).inbound_port
    name = listener_name(pod.address, inbound_port)
    istio = mesh.istio if mesh is not None else {}
    hcm = _connection_manager(
        f"inbound_{name}",
        access_log_path=access_log_path,
        use_remote_address=False,
        server_name=_SERVER_NAME,
        forward_client_cert_details="APPEND_FORWARD",
        telemetry=_telemetry_log(telemetry_log_path, "destination", node_id),
        tracing=_tracing(mesh, pod.namespace, pod.labels, _canonical_service(pod)),
        rbac=authorization.rbac_http_filters(
            istio.get("AuthorizationPolicy", ()),
            pod.namespace,
            pod.labels,
            listener_ports={port: inbound_port},
        ),
    )
    # The app sees who called: x-forwarded-client-cert with the caller's SPIFFE id (URI=...).
    hcm["set_current_client_cert_details"] = {"subject": True, "uri": True, "dns": True}
    hcm["route_config"] = route_config
    mode = peer_authentication.mtls_mode(
        istio.get("PeerAuthentication", ()), pod.namespace, pod.labels, port
    )
    listener = _listener(name, pod.address, inbound_port, "INBOUND", hcm)
    listener["filter_chains"] = mtls.inbound_filter_chains(
        mode, listener["filter_chains"][0]["filters"], sds_dir
    )
    if any(
        chain["filter_chain_match"].get("transport_protocol") == "tls"
        for chain in listener["filter_chains"]
    ):
        # Istio's listener filters: the TLS inspector reads the ClientHello so Envoy can pick a
        # chain; it waits as long as the client takes (meshConfig.protocolDetectionTimeout 0s).
        listener["listener_filters"] = [copy.deepcopy(mtls.TLS_INSPECTOR)]
        listener["listener_filters_timeout"] = "0s"
        listener["continue_on_listener_filters_timeout"] = True
    return listener


def gateway_listeners(
    mesh: Mesh,
    xds_dir: str | os.PathLike[str],
    *,
    access_log_path: str | os.PathLike[str] | None = None,
    telemetry_log_path: str | os.PathLike[str] | None = None,
    node_id: str = "",
) -> list[dict[str, Any]]:
    """The ingress gateway's listeners: one per port that an applied Istio Gateway opens.

    Like istiod, none at all until a Gateway resource selects the ingress gateway: before the
    gateway lab, http://localhost:8080 is refused, as on a cluster.
    """
    return [
        gateway_listener(
            mesh.gateway,
            xds_dir,
            port=port,
            listen_port=routes.gateway_listen_port(mesh, port),
            access_log_path=access_log_path,
            telemetry_log_path=telemetry_log_path,
            node_id=node_id,
            mesh=mesh,
        )
        for port in routes.gateway_ports(mesh)
    ]


def gateway_listener(
    gateway: Gateway,
    xds_dir: str | os.PathLike[str],
    *,
    port: int = GATEWAY_HTTP_PORT,
    listen_port: int | None = None,
    access_log_path: str | os.PathLike[str] | None = None,
    telemetry_log_path: str | os.PathLike[str] | None = None,
    node_id: str = "",
    mesh: Mesh | None = None,
) -> dict[str, Any]:
    """One HTTP listener of the ingress gateway, for the gateway pod's `port` (8080 for a Gateway
    server on port 80 or 8080): named `0.0.0.0_<port>` and routing with `http.<port>` as istiod
    names them for a server without `bind`, but bound to 127.0.0.1:<listen_port>, which is
    `gateway.port` (where learners reach it) for 8080."""
    if listen_port is None:
        listen_port = gateway.port if port == GATEWAY_HTTP_PORT else port
    name = listener_name("0.0.0.0", port)  # noqa: S104 - a name; the bind is loopback
    istio = mesh.istio if mesh is not None else {}
    hcm = _connection_manager(
        f"outbound_{name}",
        access_log_path=access_log_path,
        use_remote_address=True,
        server_name=_SERVER_NAME,
        forward_client_cert_details="SANITIZE_SET",
        telemetry=_telemetry_log(telemetry_log_path, "source", node_id),
        tracing=_tracing(
            mesh, gateway.namespace, gateway.labels, gateway.name, spawn_upstream_span=True
        ),
        rbac=authorization.rbac_http_filters(
            istio.get("AuthorizationPolicy", ()),
            gateway.namespace,
            gateway.labels,
            listener_ports={port: listen_port},
        ),
    )
    hcm["rds"] = xds_files.rds_config_source(xds_dir, routes.gateway_route_config_name(port))
    return _listener(name, "127.0.0.1", listen_port, "OUTBOUND", hcm)


def kube_proxy_listener(
    mesh: Mesh,
    port: int,
    *,
    namespace: str = "default",
    access_log_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The HTTP proxy apps without a sidecar use: Kubernetes Service routing and nothing else.

    `namespace` is the callers' namespace, where short names (`reviews:9080`) resolve.
    """
    hcm: dict[str, Any] = {
        "@type": _HCM_TYPE,
        "stat_prefix": "kube_proxy",
        "codec_type": "AUTO",
        "http_protocol_options": {"allow_absolute_url": True},
        "use_remote_address": False,
        "generate_request_id": False,
        "server_header_transformation": "PASS_THROUGH",
        "stream_idle_timeout": "0s",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "route_config": kube_proxy_route_config(mesh, namespace=namespace),
        "http_filters": [
            {
                "name": _ROUTER["name"],
                "typed_config": {**_ROUTER["typed_config"], "suppress_envoy_headers": True},
            }
        ],
    }
    if access_log_path is not None:
        hcm["access_log"] = [access_log(access_log_path)]
    return _listener("kube-proxy", "127.0.0.1", port, "OUTBOUND", hcm)


def kube_proxy_route_config(mesh: Mesh, *, namespace: str = "default") -> dict[str, Any]:
    """One virtual host per Service port, reachable by the names Kubernetes DNS gives it; any
    other host gets 502, as a name that does not resolve would fail a real call."""
    virtual_hosts = []
    for service in mesh.services:
        for service_port in service.ports:
            port = service_port.port
            virtual_hosts.append(
                {
                    "name": names.virtual_host(service.fqdn, port),
                    "domains": _service_domains(service, port, namespace),
                    "routes": [
                        {
                            "name": "default",
                            "match": {"prefix": "/"},
                            "route": {
                                "cluster": clusters.kube_proxy_cluster_name(service, port),
                                "timeout": "0s",
                            },
                        }
                    ],
                }
            )
    virtual_hosts.append(
        {
            "name": "no-such-service",
            "domains": ["*"],
            "routes": [
                {
                    "name": "no-such-service",
                    "match": {"prefix": "/"},
                    "direct_response": {
                        "status": 502,
                        "body": {
                            "inline_string": "no Service with that name and port in the "
                            "sandbox's Kubernetes\n"
                        },
                    },
                }
            ],
        }
    )
    return {
        "name": KUBE_PROXY_ROUTE_CONFIG,
        "validate_clusters": False,
        "virtual_hosts": virtual_hosts,
    }


def _service_domains(service: Service, port: int, namespace: str) -> list[str]:
    hosts = [
        service.fqdn,
        f"{service.name}.{service.namespace}.svc",
        f"{service.name}.{service.namespace}",
    ]
    if service.namespace == namespace:
        hosts.append(service.name)
    domains = [f"{host}:{port}" for host in hosts]
    if port == 80:  # http://reviews/ means port 80: only then does the bare name reach it
        domains += hosts
    return domains


def _connection_manager(
    stat_prefix: str,
    *,
    access_log_path: str | os.PathLike[str] | None,
    use_remote_address: bool,
    server_name: str | None = None,
    forward_client_cert_details: str | None = None,
    telemetry: dict[str, Any] | None = None,
    tracing: dict[str, Any] | None = None,
    rbac: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    hcm: dict[str, Any] = {
        "@type": _HCM_TYPE,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "use_remote_address": use_remote_address,
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "stream_idle_timeout": "0s",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "request_id_extension": copy.deepcopy(_UUID_REQUEST_ID),
    }
    if server_name:
        hcm["server_name"] = server_name
    if forward_client_cert_details:
        hcm["forward_client_cert_details"] = forward_client_cert_details
    logs = []
    if access_log_path is not None:
        logs.append(access_log(access_log_path))
    if telemetry is not None:
        logs.append(telemetry)
    if logs:
        hcm["access_log"] = logs
    if tracing is not None:
        hcm["tracing"] = tracing
    # Authorization first (AUDIT, DENY, ALLOW), so a denied request meets no fault injection.
    hcm["http_filters"] = [*(rbac or []), *copy.deepcopy(list(_ISTIO_HTTP_FILTERS))]
    return hcm


def _telemetry_log(
    path: str | os.PathLike[str] | None, reporter: str, node_id: str
) -> dict[str, Any] | None:
    if path is None:
        return None
    return telemetry_log.envoy_access_log(path, reporter=reporter, proxy_id=node_id)


def _tracing(
    mesh: Mesh | None,
    namespace: str,
    labels: Mapping[str, str],
    canonical_service: str,
    *,
    spawn_upstream_span: bool = False,
) -> dict[str, Any] | None:
    if mesh is None:
        return None
    settings = tracing.settings_for(mesh.istio.get("Telemetry", ()), namespace, labels)
    return tracing.connection_manager_tracing(
        settings,
        canonical_service=canonical_service,
        namespace=namespace,
        spawn_upstream_span=spawn_upstream_span,
    )


def _canonical_service(pod: Pod) -> str:
    """Istio's canonical service name: the label that names it, else the app label."""
    labels = pod.labels
    return (
        labels.get("service.istio.io/canonical-name")
        or labels.get("app.kubernetes.io/name")
        or labels.get("app")
        or pod.deployment
    )


def _listener(
    name: str, address: str, port: int, direction: str, hcm: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "traffic_direction": direction,
        "filter_chains": [{"filters": [{"name": HCM, "typed_config": dict(hcm)}]}],
    }


def _sidecar(pod: Pod) -> SidecarPorts:
    if pod.sidecar is None:
        raise ValueError(f"pod {pod.name} has no sidecar")
    return pod.sidecar


def _is_grpc(service: Service | None) -> bool:
    if service is None or not service.ports:
        return False
    port = service.ports[0]
    protocol = (port.app_protocol or port.name.split("-", 1)[0]).lower()
    return protocol in {"grpc", "grpc-web"}
