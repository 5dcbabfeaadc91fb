"""The mesh's certificate authority, workload certificates as SDS files, and proxy-config secret.

The first part checks the certificates themselves with the cryptography library: what the CA
signs, where it keeps its root, when a proxy gets a new certificate. The second runs one real
Envoy that plays two sidecars at once, the caller's outbound side and the server's inbound side,
each with its own SDS files, in front of a loopback app that echoes the x-forwarded-client-cert
header: mutual TLS with SPIFFE identities, a rotation under load, and the certificates Envoy
refuses. The last part is `istiolab proxy-config secret`, on a /certs answer recorded from that
Envoy (tests/fixtures/envoy-1.40-certs.recorded.json, written as `json.dumps(pair.admin.certs(),
indent=1)`) and on the live one.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from istiolab import cli
from istiolab.commands import proxies
from istiolab.errors import IstiolabError
from istiolab.sandbox.envoy import admin, binary, sds_files, xds_files
from istiolab.sandbox.security.ca import (
    CLOCK_SKEW_GRACE_PERIOD,
    DEFAULT_CERT_TTL,
    CertificateAuthority,
    WorkloadCertificate,
)
from istiolab.sandbox.security.workload_certs import (
    CERT_TTL_VARIABLE,
    cert_ttl_from_environ,
    current_certificate,
    ensure_workload_secrets,
    secrets_version,
)
from live import HOST, Recorded, Reply, Upstream, closed_port, stop

CALLER = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
SERVER = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
TTL = timedelta(seconds=30)
RECORDED_CERTS = Path(__file__).parent.parent / "fixtures" / "envoy-1.40-certs.recorded.json"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("ca"))


def leaf_of(certificate: WorkloadCertificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(certificate.chain_pem)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ============================================================================================
# The certificate authority


def test_a_workload_certificate_carries_one_spiffe_identity_and_chains_to_the_root(
    ca: CertificateAuthority,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    issued = ca.issue(CALLER, TTL, now=now)
    leaf = leaf_of(issued)
    root = x509.load_pem_x509_certificate(ca.root_pem)

    # The chain is the leaf alone (the root travels as ROOTCA), signed by the root.
    assert len(x509.load_pem_x509_certificates(issued.chain_pem)) == 1
    leaf.verify_directly_issued_by(root)
    verifier = (
        x509.verification.PolicyBuilder()
        .store(x509.verification.Store([root]))
        .time(now)
        .build_client_verifier()
    )
    verified = verifier.verify(leaf, [])
    assert [uri.value for uri in verified.subjects or []] == [CALLER]

    # Istio's shape: empty subject, the SPIFFE URI as the only (critical) SAN.
    assert leaf.subject == x509.Name([])
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.critical
    assert list(names.value) == [x509.UniformResourceIdentifier(CALLER)]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)

    # Valid from two minutes before signing (clock skew) until TTL after it.
    assert issued.not_before == now - CLOCK_SKEW_GRACE_PERIOD == leaf.not_valid_before_utc
    assert issued.not_after == now + TTL == leaf.not_valid_after_utc
    assert issued.issued_at == now
    assert issued.renew_at() == now + TTL / 2  # pilot-agent renews halfway
    assert issued.spiffe_id == CALLER
    assert issued.serial == leaf.serial_number
    assert issued.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert b"PRIVATE" not in repr(issued).encode()
    assert ca.signed(issued)


def test_every_certificate_gets_its_own_key_and_serial(ca: CertificateAuthority) -> None:
    issued = [ca.issue(SERVER) for _ in range(3)]
    assert len({certificate.serial for certificate in issued}) == 3
    assert len({certificate.key_pem for certificate in issued}) == 3
    assert all(0 < certificate.serial < 2**128 for certificate in issued)
    default = issued[0]
    assert default.not_after - default.issued_at == DEFAULT_CERT_TTL == timedelta(hours=24)


def test_the_ca_refuses_what_is_not_a_spiffe_id_of_the_mesh(ca: CertificateAuthority) -> None:
    for wrong in ("reviews", "spiffe://example.org/ns/default/sa/x", "spiffe://cluster.local/"):
        with pytest.raises(ValueError, match=r"not a SPIFFE ID in trust domain cluster\.local"):
            ca.issue(wrong)
    with pytest.raises(ValueError, match="TTL must be positive"):
        ca.issue(CALLER, timedelta(0))


def test_the_root_is_created_once_and_then_reused(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path / "ca")
    again = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert again.root_pem == first.root_pem
    assert again.signed(first.issue(CALLER))  # a restarted control plane signs with the same key

    assert mode_of(tmp_path / "ca" / "root-cert.pem") == 0o644
    assert mode_of(tmp_path / "ca" / "root-key.pem") == 0o600
    root = x509.load_pem_x509_certificate((tmp_path / "ca" / "root-cert.pem").read_bytes())
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "cluster.local"
    )
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert root.not_valid_after_utc - root.not_valid_before_utc >= timedelta(days=3650)
    root.verify_directly_issued_by(root)

    other = CertificateAuthority.load_or_create(tmp_path / "elsewhere")
    assert other.root_pem != first.root_pem
    assert not other.signed(first.issue(CALLER))


def test_a_broken_root_is_an_error_that_says_how_to_start_over(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "root-key.pem").unlink()
    with pytest.raises(IstiolabError, match=r"root-key\.pem is missing") as missing:
        CertificateAuthority.load_or_create(tmp_path)
    assert "delete root-cert.pem and root-key.pem" in missing.value.fix

    (tmp_path / "root-key.pem").write_text("not a key\n")
    with pytest.raises(IstiolabError, match="is unreadable"):
        CertificateAuthority.load_or_create(tmp_path)

    other = tmp_path / "other"
    CertificateAuthority.load_or_create(other)
    (tmp_path / "root-key.pem").write_bytes((other / "root-key.pem").read_bytes())
    with pytest.raises(IstiolabError, match=r"root-key\.pem is not the key of root-cert\.pem"):
        CertificateAuthority.load_or_create(tmp_path)


def test_the_certificate_lifetime_comes_from_istiolab_cert_ttl() -> None:
    assert cert_ttl_from_environ({}) == DEFAULT_CERT_TTL
    assert cert_ttl_from_environ({CERT_TTL_VARIABLE: ""}) == DEFAULT_CERT_TTL
    assert cert_ttl_from_environ({CERT_TTL_VARIABLE: "30"}) == timedelta(seconds=30)
    assert cert_ttl_from_environ({CERT_TTL_VARIABLE: " 3600 "}) == timedelta(hours=1)
    for wrong in ("0", "-5", "1.5", "30s", "soon"):
        with pytest.raises(IstiolabError) as error:
            cert_ttl_from_environ({CERT_TTL_VARIABLE: wrong})
        assert f"ISTIOLAB_CERT_TTL={wrong!r} is not a certificate lifetime" in error.value.message
        assert "ISTIOLAB_CERT_TTL=60" in error.value.fix


# ============================================================================================
# A proxy's certificate: its SDS files, and when it is renewed


def files_state(xds_dir: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in sorted(xds_dir.iterdir())}


def test_secrets_are_discovery_responses_and_keys_are_for_the_owner_only(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = ensure_workload_secrets(ca, tmp_path, CALLER, ttl=TTL)

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "cert-chain.pem",
        "key.pem",
        "root-cert.pem",
        "sds_ROOTCA.json",
        "sds_default.json",
    ]
    # mkstemp's mode, kept by the rename: owner only, also for the files without a key.
    assert mode_of(tmp_path / "sds_default.json") == 0o600
    assert mode_of(tmp_path / "sds_ROOTCA.json") == 0o600
    assert mode_of(tmp_path / "key.pem") == 0o600
    assert mode_of(tmp_path / "cert-chain.pem") == 0o644
    assert mode_of(tmp_path / "root-cert.pem") == 0o644
    assert (tmp_path / "cert-chain.pem").read_bytes() == issued.chain_pem
    assert (tmp_path / "key.pem").read_bytes() == issued.key_pem
    assert (tmp_path / "root-cert.pem").read_bytes() == ca.root_pem

    default = xds_files.read(sds_files.sds_path(tmp_path, "default"))
    assert default == {
        "version_info": f"{issued.serial:x}",
        "type_url": sds_files.SECRET_TYPE,
        "resources": [
            {
                "@type": sds_files.SECRET_TYPE,
                "name": "default",
                "tls_certificate": {
                    "certificate_chain": {"inline_string": issued.chain_pem.decode()},
                    "private_key": {"inline_string": issued.key_pem.decode()},
                },
            }
        ],
    }
    root = xds_files.read(sds_files.sds_path(tmp_path, "ROOTCA"))
    assert root["resources"] == [
        {
            "@type": sds_files.SECRET_TYPE,
            "name": "ROOTCA",
            "validation_context": {"trusted_ca": {"inline_string": ca.root_pem.decode()}},
        }
    ]
    assert sds_files.secret_config(tmp_path, "ROOTCA") == {
        "name": "ROOTCA",
        "sds_config": {
            "path_config_source": {"path": str(tmp_path / "sds_ROOTCA.json")},
            "resource_api_version": "V3",
        },
    }


def test_a_fresh_certificate_is_kept_and_its_files_left_alone(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    proxy = tmp_path / "proxy"
    issued = ensure_workload_secrets(ca, proxy, CALLER, ttl=TTL)
    before = files_state(proxy)

    just_before_renewal = issued.renew_at() - timedelta(seconds=1)
    assert ensure_workload_secrets(ca, proxy, CALLER, ttl=TTL, now=just_before_renewal) == issued
    # A restarted control plane loads the same root, reads the certificate back, and keeps it.
    restarted = CertificateAuthority.load_or_create(tmp_path / "ca")
    assert current_certificate(proxy) == issued
    assert ensure_workload_secrets(restarted, proxy, CALLER, ttl=TTL) == issued
    assert files_state(proxy) == before


def test_a_certificate_is_renewed_halfway_through_its_life(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = ensure_workload_secrets(ca, tmp_path, CALLER, ttl=TTL)
    renewed = ensure_workload_secrets(ca, tmp_path, CALLER, ttl=TTL, now=issued.renew_at())

    assert renewed.serial != issued.serial
    assert renewed.key_pem != issued.key_pem
    assert current_certificate(tmp_path) == renewed
    assert xds_files.read(sds_files.sds_path(tmp_path, "default"))["version_info"] == (
        secrets_version(renewed)
    )
    assert (tmp_path / "cert-chain.pem").read_bytes() == renewed.chain_pem


def test_a_new_identity_a_new_root_or_a_shorter_ttl_gets_a_new_certificate(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    first = ensure_workload_secrets(ca, tmp_path / "proxy", CALLER, ttl=timedelta(hours=1))

    shorter = ensure_workload_secrets(ca, tmp_path / "proxy", CALLER, ttl=TTL)
    assert shorter.serial != first.serial
    assert shorter.not_after - shorter.issued_at == TTL

    moved = ensure_workload_secrets(ca, tmp_path / "proxy", SERVER, ttl=TTL)
    assert moved.spiffe_id == SERVER
    assert leaf_of(moved).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier) == [SERVER]

    new_root = CertificateAuthority.load_or_create(tmp_path / "new-ca")
    resigned = ensure_workload_secrets(new_root, tmp_path / "proxy", SERVER, ttl=TTL)
    assert new_root.signed(resigned)
    assert not ca.signed(resigned)
    assert (tmp_path / "proxy" / "root-cert.pem").read_bytes() == new_root.root_pem
    root_secret = xds_files.read(sds_files.sds_path(tmp_path / "proxy", "ROOTCA"))
    assert root_secret["resources"][0]["validation_context"]["trusted_ca"] == {
        "inline_string": new_root.root_pem.decode()
    }


def test_damaged_files_are_repaired(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ensure_workload_secrets(ca, tmp_path, CALLER, ttl=TTL)

    (tmp_path / "key.pem").unlink()  # a learner's copy gone: written again, same certificate
    assert ensure_workload_secrets(ca, tmp_path, CALLER, ttl=TTL) == issued
    assert (tmp_path / "key.pem").read_bytes() == issued.key_pem

    sds_files.sds_path(tmp_path, "default").write_text("{")  # unreadable: a new certificate
    assert current_certificate(tmp_path) is None
    replaced = ensure_workload_secrets(ca, tmp_path, CALLER, ttl=TTL)
    assert replaced.serial != issued.serial
    assert current_certificate(tmp_path) == replaced

    other_key = ca.issue(CALLER).key_pem  # a key that is not the certificate's
    with pytest.raises(ValueError, match="does not belong"):
        WorkloadCertificate.from_pem(replaced.chain_pem, other_key)


# ============================================================================================
# A real Envoy: mutual TLS with the SDS files


@pytest.fixture(scope="module")
def envoy_path() -> str:
    try:
        return binary.envoy_binary()
    except IstiolabError as error:
        pytest.skip(str(error))


TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": HOST, "port_value": port}}


def static_cluster(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(port)}}]}],
        },
        **extra,
    }


def http_listener(name: str, port: int, cluster: str, **hcm: Any) -> dict[str, Any]:
    route = {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
    return {
        "name": name,
        "address": address(port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM_TYPE,
                            "stat_prefix": name,
                            "route_config": {
                                "virtual_hosts": [
                                    {"name": name, "domains": ["*"], "routes": [route]}
                                ]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters."
                                        "http.router.v3.Router"
                                    },
                                }
                            ],
                            **hcm,
                        },
                    }
                ]
            }
        ],
    }


def common_tls_context(sds_dir: Path, peer: str | None = None) -> dict[str, Any]:
    """Istio's TLS context: `default` and `ROOTCA` over SDS, and the peer's SPIFFE ID when the
    caller checks it (a server leaves that to authorization policies)."""
    validation: dict[str, Any] = {}
    if peer is not None:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": peer}}
        ]
    return {
        "tls_certificate_sds_secret_configs": [sds_files.secret_config(sds_dir, "default")],
        "combined_validation_context": {
            "default_validation_context": validation,
            "validation_context_sds_secret_config": sds_files.secret_config(sds_dir, "ROOTCA"),
        },
    }


@dataclass
class MeshPair:
    """One Envoy playing two sidecars: the caller's outbound side (a plaintext listener whose
    cluster uses mutual TLS) and the server's inbound side (a listener that requires a client
    certificate), each with its own SDS files, in front of an app that echoes the XFCC header."""

    ca: CertificateAuthority
    admin: admin.EnvoyAdmin
    caller_dir: Path
    server_dir: Path
    outbound_port: int
    inbound_port: int

    def call(self) -> tuple[int, str]:
        """GET / through the caller's listener: (status, the XFCC the app got, or Envoy's
        answer); (0, the error) if the connection failed."""
        connection = http.client.HTTPConnection(HOST, self.outbound_port, timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response.status, response.read().decode()
        except (OSError, http.client.HTTPException) as error:
            return 0, str(error)
        finally:
            connection.close()

    def stat(self, suffix: str, prefix: str) -> int:
        """The sum of the counters named `prefix...suffix`, e.g. every listener's
        `ssl.fail_verify_error`."""
        return sum(
            int(value)
            for name, value in self.admin.stats(suffix.replace(".", r"\.") + "$").items()
            if name.startswith(prefix)
        )

    def loaded_serials(self) -> set[int]:
        return {
            int(cert["serial_number"], 16)
            for context in self.admin.certs()["certificates"]
            for cert in context["cert_chain"]
        }

    def wait_for_serials(self, *serials: int) -> None:
        """Until Envoy presents exactly these certificates (it reloads a replaced file in ms)."""
        deadline = time.monotonic() + 5
        while self.loaded_serials() != set(serials):
            assert time.monotonic() < deadline, f"Envoy still has {self.loaded_serials()}"
            time.sleep(0.01)

    def restore(self) -> None:
        """Both proxies back on good certificates, each for its own identity."""
        caller = ensure_workload_secrets(self.ca, self.caller_dir, CALLER, ttl=TTL)
        server = ensure_workload_secrets(self.ca, self.server_dir, SERVER, ttl=TTL)
        self.wait_for_serials(caller.serial, server.serial)


def echo_client_cert(request: Recorded) -> Reply:
    return Reply(body=request.headers.get("x-forwarded-client-cert", ""), content_type="text/plain")


@contextmanager
def mesh_pair(directory: Path, ca: CertificateAuthority) -> Iterator[MeshPair]:
    """Start the Envoy (its SDS files written first: a TLS context needs them to exist)."""
    app = Upstream(reply=echo_client_cert)
    caller_dir, server_dir = directory / "caller", directory / "server"
    ensure_workload_secrets(ca, caller_dir, CALLER, ttl=TTL)
    ensure_workload_secrets(ca, server_dir, SERVER, ttl=TTL)
    admin_port, outbound_port, inbound_port = closed_port(), closed_port(), closed_port()
    inbound = http_listener(
        "inbound",
        inbound_port,
        "app",
        forward_client_cert_details="APPEND_FORWARD",
        set_current_client_cert_details={"uri": True},
    )
    inbound["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": TLS + "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": common_tls_context(server_dir),
        },
    }
    to_server = static_cluster(
        "outbound|9080||reviews.default.svc.cluster.local",
        inbound_port,
        transport_socket={
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": TLS + "UpstreamTlsContext",
                "common_tls_context": common_tls_context(caller_dir, peer=SERVER),
            },
        },
        # A new connection, so a new TLS handshake, for every request: each one tests the
        # certificates loaded at that moment.
        typed_extension_protocol_options={
            HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{HTTP_OPTIONS}",
                "common_http_protocol_options": {"max_requests_per_connection": 1},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    )
    config = {
        "node": {
            "id": "sidecar~127.0.0.1~security-test.default~default.svc.cluster.local",
            "cluster": "security-test.default",
        },
        "admin": {"address": address(admin_port)},
        "static_resources": {
            "listeners": [
                http_listener("outbound", outbound_port, to_server["name"]),
                inbound,
            ],
            "clusters": [to_server, static_cluster("app", app.port)],
        },
    }
    bootstrap_path = directory / "bootstrap.json"
    bootstrap_path.write_text(json.dumps(config))
    log_path = directory / "envoy.log"
    process = subprocess.Popen(
        binary.run_command(bootstrap_path, log_path=log_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pair = MeshPair(
        ca=ca,
        admin=admin.EnvoyAdmin(admin_port, proxy="security-test", log_path=log_path),
        caller_dir=caller_dir,
        server_dir=server_dir,
        outbound_port=outbound_port,
        inbound_port=inbound_port,
    )
    try:
        deadline = time.monotonic() + 15
        while pair.call()[0] != 200:
            assert process.poll() is None, log_path.read_text() if log_path.exists() else ""
            assert time.monotonic() < deadline, "Envoy did not serve within 15 s"
            time.sleep(0.05)
        yield pair
    finally:
        stop(process)
        app.close()


@pytest.fixture(scope="module")
def live_pair(
    envoy_path: str, ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MeshPair]:
    with mesh_pair(tmp_path_factory.mktemp("mtls"), ca) as pair:
        yield pair


@pytest.fixture
def pair(live_pair: MeshPair) -> Iterator[MeshPair]:
    live_pair.restore()
    yield live_pair
    live_pair.restore()


def xfcc_hash(certificate: WorkloadCertificate) -> str:
    """The Hash= of an XFCC element: the SHA-256 of the client certificate, DER-encoded."""
    return hashlib.sha256(leaf_of(certificate).public_bytes(serialization.Encoding.DER)).hexdigest()


def test_the_server_sees_the_callers_spiffe_identity(pair: MeshPair) -> None:
    status, xfcc = pair.call()
    assert status == 200, xfcc
    caller = current_certificate(pair.caller_dir)
    assert caller is not None
    assert xfcc == f"By={SERVER};Hash={xfcc_hash(caller)};URI={CALLER}"
    # The private key reaches Envoy, but its admin API never shows it.
    dump = json.dumps(pair.admin.config_dump("dynamic_active_secrets"))
    assert '"private_key": {"inline_string": "[redacted]"}' in dump
    assert "PRIVATE KEY" not in dump


def test_rotating_both_certificates_under_load_drops_no_request(pair: MeshPair) -> None:
    caller = current_certificate(pair.caller_dir)
    server = current_certificate(pair.server_dir)
    assert caller is not None and server is not None
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def call_until_stopped() -> None:
        while not stop.is_set():
            results.append(pair.call())

    def wait_for_more(count: int) -> None:
        target = len(results) + count
        deadline = time.monotonic() + 5
        while len(results) < target and time.monotonic() < deadline:
            time.sleep(0.01)

    caller_thread = threading.Thread(target=call_until_stopped)
    caller_thread.start()
    try:
        wait_for_more(20)
        # Half the TTL later: both are due for renewal, as pilot-agent would find them.
        renewed_caller = ensure_workload_secrets(
            pair.ca, pair.caller_dir, CALLER, ttl=TTL, now=caller.renew_at()
        )
        renewed_server = ensure_workload_secrets(
            pair.ca, pair.server_dir, SERVER, ttl=TTL, now=server.renew_at()
        )
        pair.wait_for_serials(renewed_caller.serial, renewed_server.serial)
        wait_for_more(20)
    finally:
        stop.set()
        caller_thread.join()

    assert renewed_caller.serial != caller.serial
    assert renewed_server.serial != server.serial
    failed = [result for result in results if result[0] != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:3]}"
    assert len(results) >= 40
    # The requests after the rotation presented the new certificate.
    assert results[-1][1] == f"By={SERVER};Hash={xfcc_hash(renewed_caller)};URI={CALLER}"
    assert pair.stat("sds.default.update_rejected", "sds.") == 0


def test_a_certificate_from_another_ca_is_refused(pair: MeshPair, tmp_path: Path) -> None:
    stranger = CertificateAuthority.load_or_create(tmp_path / "stranger")
    forged = stranger.issue(CALLER, TTL)
    server = current_certificate(pair.server_dir)
    assert server is not None
    refused_before = pair.stat("ssl.fail_verify_error", "listener.")

    # The caller still trusts the mesh's root, and presents the stranger's certificate.
    sds_files.write_secrets(pair.caller_dir, "forged", forged, pair.ca.root_pem)
    pair.wait_for_serials(forged.serial, server.serial)
    status, body = pair.call()

    assert status == 503, body
    assert pair.stat("ssl.fail_verify_error", "listener.") > refused_before
    # The next renewal notices the certificate is not the mesh CA's and replaces it.
    restored = ensure_workload_secrets(pair.ca, pair.caller_dir, CALLER, ttl=TTL)
    assert restored.serial != forged.serial
    pair.wait_for_serials(restored.serial, server.serial)
    assert pair.call()[0] == 200


def test_the_caller_refuses_a_server_with_another_identity(pair: MeshPair) -> None:
    impostor = "spiffe://cluster.local/ns/default/sa/impostor"
    caller = current_certificate(pair.caller_dir)
    assert caller is not None
    refused_before = pair.stat("ssl.fail_verify_san", "cluster.")

    wrong = ensure_workload_secrets(pair.ca, pair.server_dir, impostor, ttl=TTL)
    pair.wait_for_serials(caller.serial, wrong.serial)
    status, body = pair.call()

    assert status == 503, body  # signed by the mesh CA, but not the identity the caller expects
    assert pair.stat("ssl.fail_verify_san", "cluster.") > refused_before


# ============================================================================================
# istiolab proxy-config secret


# When the Envoy of the recorded answer ran: every certificate in it was valid then.
RECORDED_AT = datetime(2026, 11, 25, 23, 16, 51, tzinfo=UTC)


def recorded_certs() -> dict[str, Any]:
    return json.loads(RECORDED_CERTS.read_text())


def test_the_table_shows_each_certificate_once_with_its_identity() -> None:
    certs = recorded_certs()
    rows = proxies.secret_rows(certs, now=RECORDED_AT)

    # Two TLS contexts (the server's listener, the caller's cluster): two workload
    # certificates, and the root they share, shown once.
    assert [row[:4] for row in rows] == [
        ("default", "Cert Chain", "ACTIVE", "true"),
        ("default", "Cert Chain", "ACTIVE", "true"),
        ("ROOTCA", "CA", "ACTIVE", "true"),
    ]
    assert [row[7] for row in rows] == [SERVER, CALLER, ""]
    first = certs["certificates"][0]["cert_chain"][0]
    assert rows[0][4:7] == (
        f"{int(first['serial_number'], 16):x}",
        first["expiration_time"],
        first["valid_from"],
    )
    table = proxies.format_secrets(certs, now=RECORDED_AT).splitlines()
    assert table[0].split("   ")[0] == "RESOURCE NAME"
    assert [column.strip() for column in table[0].split("   ") if column] == list(
        proxies.SECRET_HEADER
    )
    assert len(table) == 4

    # Once the workload certificates expire, VALID CERT says so; the root is still valid.
    later = RECORDED_AT + timedelta(days=1)
    assert [row[3] for row in proxies.secret_rows(certs, now=later)] == ["false", "false", "true"]


def test_serial_numbers_are_written_as_istioctl_writes_them() -> None:
    # Envoy writes whole bytes ("0abc..."); istioctl, from Go's %x, no leading zero.
    certs = {
        "certificates": [
            {"ca_cert": [], "cert_chain": [{"serial_number": "0abc01", "subject_alt_names": []}]}
        ]
    }
    assert proxies.secret_rows(certs)[0][4] == "abc01"
    assert proxies.DEFAULT_SECRET == sds_files.DEFAULT_SECRET
    assert proxies.ROOT_SECRET == sds_files.ROOT_SECRET


def test_a_proxy_without_certificates_says_so() -> None:
    # What Envoy 1.40 answers when none of its listeners or clusters uses TLS.
    assert proxies.format_secrets({"certificates": []}) == proxies.NO_SECRETS
    assert "No secret items to show" in proxies.NO_SECRETS


def test_the_recorded_answer_has_the_shape_envoy_writes(pair: MeshPair) -> None:
    def shape(certs: dict[str, Any]) -> set[tuple[str, ...]]:
        found = set()
        for context in certs["certificates"]:
            for kind in ("ca_cert", "cert_chain"):
                for cert in context[kind]:
                    found.add((kind, *sorted(cert)))
        return found

    assert shape(pair.admin.certs()) == shape(recorded_certs())


@pytest.fixture
def istiolab(
    pair: MeshPair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """`istiolab ARGS` in this process, with the module's Envoy as the only proxy there is."""
    entry = {
        "name": "reviews-v1-5f7c9d8b6-sec01",
        "namespace": "default",
        "kind": "pod",
        "admin_port": pair.admin.port,
    }
    monkeypatch.setattr(proxies, "_all_proxies", lambda: [entry])

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_proxy_config_secret_shows_what_envoy_loaded(
    pair: MeshPair, istiolab: Callable[..., tuple[int, str, str]]
) -> None:
    code, out, err = istiolab("proxy-config", "secret", "reviews-v1")
    assert (code, err) == (0, "")
    certs = pair.admin.certs()
    assert out == proxies.format_secrets(certs) + "\n"
    caller = current_certificate(pair.caller_dir)
    assert caller is not None
    [row] = [line for line in out.splitlines() if CALLER in line]
    assert row.split() == [
        "default",
        "Cert",
        "Chain",
        "ACTIVE",
        "true",
        f"{caller.serial:x}",
        f"{caller.not_after:%Y-%m-%dT%H:%M:%SZ}",
        f"{caller.not_before:%Y-%m-%dT%H:%M:%SZ}",
        CALLER,
    ]
    for alias in ("secrets", "s", "sec"):
        assert istiolab("pc", alias, "reviews-v1")[1] == out

    code, out, _ = istiolab("pc", "secret", "reviews-v1", "-o", "json")
    assert code == 0
    # Envoy recomputes days_until_expiration on every read: it may tick over between two reads.
    assert without_countdown(json.loads(out)) == without_countdown(certs)
    as_yaml = yaml.safe_load(istiolab("pc", "secret", "reviews-v1", "-o", "yaml")[1])
    assert without_countdown(as_yaml) == without_countdown(certs)


def without_countdown(certs: dict[str, Any]) -> dict[str, Any]:
    """/certs without the one field that changes with the clock alone."""
    return {
        "certificates": [
            {
                kind: [
                    {k: v for k, v in cert.items() if k != "days_until_expiration"}
                    for cert in entry.get(kind) or ()
                ]
                for kind in ("ca_cert", "cert_chain")
            }
            for entry in certs["certificates"]
        ]
    }
