"""Mutual TLS between proxies, as istiod configures it (reference sections 2.5 and 3).

Two halves, built independently and meeting on the wire:

- The server side, a sidecar's inbound listener: which connections it accepts depends on the
  PeerAuthentication mode of the workload's port (peer_authentication.py). STRICT keeps one
  filter chain that only a TLS handshake with a client certificate can match; PERMISSIVE adds a
  second one for plaintext; DISABLE keeps only the plaintext one. Envoy picks the chain from
  what the TLS inspector saw in the connection's first bytes, and never falls back to another
  chain, so a plaintext caller under STRICT matches nothing and its connection is closed.

- The client side, each outbound cluster: with no DestinationRule `tls`, auto-mTLS sends TLS to
  every endpoint that has a sidecar and accepts it (endpoint metadata `tlsMode: istio`) and
  plaintext to the others; a DestinationRule's `tls.mode` overrides that for its host.

Certificates come from the proxy's own SDS files (envoy/sds_files.py): `default` is the
workload's certificate and key, `ROOTCA` the mesh's root, Istio's names for both.

Stock Envoy lacks istio-proxy's `istio.alpn` filter, so a client cannot offer `istio-http/1.1`
per request; it offers the fixed ALPN `istio-peer-exchange, istio`, which the server's mTLS
chain accepts (checked on Envoy 1.40, reference section 3.4).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..envoy import sds_files
from .peer_authentication import DISABLE, STRICT

TLS_SOCKET = "envoy.transport_sockets.tls"
_UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_DOWNSTREAM_TLS = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
)
_RAW_BUFFER = {
    "name": "envoy.transport_sockets.raw_buffer",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    },
}
TLS_INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3."
        "TlsInspector",
        "initial_read_buffer_size": 512,
    },
}

# What an Istio client offers, and what the server's mTLS chain accepts (buildInboundTLS).
CLIENT_ALPN = ["istio-peer-exchange", "istio"]
MTLS_ALPN = ["istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"]
_TLS_PARAMS = {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}
# istiod's default inbound cipher suites (security.ServerCipherSuites).
_SERVER_CIPHERS = [
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
]
# The endpoint metadata auto-mTLS matches on (model.TLSModeLabelShortname).
TLS_MODE_METADATA = {"envoy.transport_socket_match": {"tlsMode": "istio"}}


# --- the server side ---------------------------------------------------------------------------


def inbound_filter_chains(
    mode: str, filters: Sequence[Mapping[str, Any]], sds_dir: str | os.PathLike[str] | None
) -> list[dict[str, Any]]:
    """The inbound listener's filter chains for a PeerAuthentication mode, each with `filters`.

    The chains carry no `destination_port`: a sandbox inbound listener binds its port itself,
    where istiod's chains share one `virtualInbound` listener. A proxy without certificates
    (`sds_dir` None) can only serve plaintext.
    """
    plaintext = {
        "name": "plaintext",
        "filter_chain_match": {"transport_protocol": "raw_buffer"},
        "filters": [dict(f) for f in filters],
    }
    if sds_dir is None or mode == DISABLE:
        return [plaintext]
    mutual = {
        "name": "mtls",
        "filter_chain_match": {"transport_protocol": "tls"},
        "transport_socket": _downstream_tls(sds_dir),
        "filters": [dict(f) for f in filters],
    }
    if mode == STRICT:
        return [mutual]
    # PERMISSIVE: TLS only when the client speaks Istio's ALPN, so a caller's own TLS (to an app
    # that terminates TLS itself) still reaches the app untouched; plaintext as before.
    mutual["filter_chain_match"]["application_protocols"] = list(MTLS_ALPN)
    return [mutual, plaintext]


def _downstream_tls(sds_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return {
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": _DOWNSTREAM_TLS,
            "require_client_certificate": True,
            "common_tls_context": {
                # Never "istio" here: the app-level protocol is negotiated from these.
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_params": {**_TLS_PARAMS, "cipher_suites": list(_SERVER_CIPHERS)},
                "tls_certificate_sds_secret_configs": [
                    sds_files.secret_config(sds_dir, sds_files.DEFAULT_SECRET)
                ],
                # Any workload of the mesh may connect; who may do what is AuthorizationPolicy's
                # job, so the server checks the chain to the root and nothing else.
                "combined_validation_context": {
                    "default_validation_context": {},
                    "validation_context_sds_secret_config": sds_files.secret_config(
                        sds_dir, sds_files.ROOT_SECRET
                    ),
                },
            },
        },
    }


# --- the client side ---------------------------------------------------------------------------


def apply_upstream_tls(
    cluster: dict[str, Any],
    tls: Mapping[str, Any] | None,
    *,
    sni: str,
    peer_identities: Iterable[str],
    sds_dir: str | os.PathLike[str] | None,
    http2: bool = False,
) -> None:
    """Give an outbound cluster the transport socket(s) istiod would (buildUpstreamTLSSettings).

    `tls` is the DestinationRule's `trafficPolicy.tls` for this cluster (None without one);
    `peer_identities` the SPIFFE ids of the service's workloads, which the client checks the
    server's certificate against. A proxy without certificates (`sds_dir` None) sends plaintext.
    """
    mode = str((tls or {}).get("mode") or "")
    if mode == DISABLE:
        return
    if mode in ("SIMPLE", "MUTUAL"):
        cluster["transport_socket"] = _originated_tls(tls or {}, mutual=mode == "MUTUAL")
        return
    if sds_dir is None:
        return
    istio_mutual = _istio_mutual(sds_dir, sni, sorted(set(peer_identities)), http2)
    if mode == "ISTIO_MUTUAL":
        cluster["transport_socket"] = istio_mutual
        return
    # Auto-mTLS: TLS to endpoints labelled tlsMode=istio (see endpoint_metadata), plaintext to
    # the rest, decided per endpoint, so a half-injected Service still works.
    cluster["transport_socket_matches"] = [
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": istio_mutual},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": dict(_RAW_BUFFER)},
    ]


def _istio_mutual(
    sds_dir: str | os.PathLike[str], sni: str, peer_identities: list[str], http2: bool
) -> dict[str, Any]:
    validation: dict[str, Any] = {}
    if peer_identities:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": identity}} for identity in peer_identities
        ]
    return {
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": _UPSTREAM_TLS,
            "sni": sni,
            "common_tls_context": {
                "alpn_protocols": [*CLIENT_ALPN, *(["h2"] if http2 else [])],
                "tls_params": dict(_TLS_PARAMS),
                "tls_certificate_sds_secret_configs": [
                    sds_files.secret_config(sds_dir, sds_files.DEFAULT_SECRET)
                ],
                "combined_validation_context": {
                    "default_validation_context": validation,
                    "validation_context_sds_secret_config": sds_files.secret_config(
                        sds_dir, sds_files.ROOT_SECRET
                    ),
                },
            },
        },
    }


def _originated_tls(tls: Mapping[str, Any], *, mutual: bool) -> dict[str, Any]:
    """SIMPLE and MUTUAL: TLS the proxy originates with files named in the DestinationRule, as
    for a service that terminates TLS itself (not a sidecar, which wants ISTIO_MUTUAL)."""
    context: dict[str, Any] = {"tls_params": dict(_TLS_PARAMS)}
    if not tls.get("insecureSkipVerify"):
        # Without caCertificates istiod uses the system's roots ("file-root:system").
        ca_file = tls.get("caCertificates") or ssl.get_default_verify_paths().cafile
        validation: dict[str, Any] = {"trusted_ca": {"filename": str(ca_file)}} if ca_file else {}
        names = [str(name) for name in tls.get("subjectAltNames") or ()]
        if names:
            validation["match_typed_subject_alt_names"] = [
                {"san_type": san_type, "matcher": {"exact": name}}
                for name in names
                for san_type in ("DNS", "URI")
            ]
        if validation:
            context["validation_context"] = validation
    if mutual:
        context["tls_certificates"] = [
            {
                "certificate_chain": {"filename": str(tls.get("clientCertificate", ""))},
                "private_key": {"filename": str(tls.get("privateKey", ""))},
            }
        ]
    config: dict[str, Any] = {"@type": _UPSTREAM_TLS, "common_tls_context": context}
    if tls.get("sni"):
        config["sni"] = str(tls["sni"])
    return {"name": TLS_SOCKET, "typed_config": config}


def sni(port: int, host: str, subset: str = "") -> str:
    """istiod's SNI for a cluster, the DNS-SRV form of its name: outbound_.9080_.v1_.reviews..."""
    return f"outbound_.{port}_.{subset}_.{host}"
