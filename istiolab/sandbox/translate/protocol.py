"""A Service port's protocol, decided the way Istio decides it (pkg/config/kube/conversion.go).

`appProtocol` wins over the port name; otherwise the part of the name before the first "-" is the
protocol (`http`, `http-web`, `grpc-api`; `grpc-web` is recognised as a whole). A port whose
protocol cannot be told is "sniffed": Istio detects HTTP on the first bytes, so it is treated as
HTTP for routing, except the well-known TCP ports (SMTP, DNS, MySQL, MongoDB).
"""

from __future__ import annotations

from ..model import ServicePort

HTTP = "HTTP"
HTTP2 = "HTTP2"
HTTP_PROXY = "HTTP_PROXY"
GRPC = "GRPC"
GRPC_WEB = "GRPC-Web"
HTTPS = "HTTPS"
TCP = "TCP"
TLS = "TLS"
UDP = "UDP"
MONGO = "Mongo"
MYSQL = "MySQL"
REDIS = "Redis"
UNSUPPORTED = "UnsupportedProtocol"  # Istio's name for "not known: sniff it"

_BY_NAME = {
    "http": HTTP,
    "http2": HTTP2,
    "http_proxy": HTTP_PROXY,
    "grpc": GRPC,
    "grpc-web": GRPC_WEB,
    "https": HTTPS,
    "tcp": TCP,
    "tls": TLS,
    "udp": UDP,
    "mongo": MONGO,
    "mysql": MYSQL,
    "redis": REDIS,
}
_KUBERNETES_APP_PROTOCOLS = {"kubernetes.io/h2c": HTTP2, "kubernetes.io/ws": HTTP}
_HTTP_PROTOCOLS = frozenset({HTTP, HTTP2, HTTP_PROXY, GRPC, GRPC_WEB})
WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})


def parse(name: str) -> str:
    """Istio's protocol.Parse: a protocol name, case-insensitive; UNSUPPORTED if unknown."""
    return _BY_NAME.get(name.lower(), UNSUPPORTED)


def port_protocol(port: ServicePort) -> str:
    if port.app_protocol:
        if port.app_protocol in _KUBERNETES_APP_PROTOCOLS:
            return _KUBERNETES_APP_PROTOCOLS[port.app_protocol]
        name = port.app_protocol
    else:
        name = port.name
    if name.lower().startswith("grpc-web"):
        return GRPC_WEB
    protocol = parse(name.split("-", 1)[0])
    if protocol == UNSUPPORTED and port.port in WELL_KNOWN_TCP_PORTS:
        return TCP
    return protocol


def is_http(protocol: str) -> bool:
    return protocol in _HTTP_PROTOCOLS


def is_http_or_sniffed(port: ServicePort) -> bool:
    """Whether Istio builds HTTP routes for this port (protocol.IsHTTPOrSniffed)."""
    protocol = port_protocol(port)
    return is_http(protocol) or protocol == UNSUPPORTED
