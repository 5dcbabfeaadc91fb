"""mTLS between two real sidecars, configured exactly as the control plane configures them.

Two Envoys, each from `proxies.sidecar_config`: productpage's (the caller) and reviews' (in front
of a recording app that stands in for reviews, so the test sees what the app receives). Their
certificates come from the sandbox's certificate authority. The outcomes are those of istio.io's
mTLS migration task: mutual TLS by default between sidecars, plaintext accepted under PERMISSIVE
and refused under STRICT, and a client told to DISABLE TLS towards a STRICT server failing.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from istiolab.sandbox.envoy import admin, binary, bootstrap, xds_files
from istiolab.sandbox.model import Gateway, Mesh, Pod, Service, ServicePort, SidecarPorts
from istiolab.sandbox.security.ca import CertificateAuthority
from istiolab.sandbox.security.workload_certs import ensure_workload_secrets
from istiolab.sandbox.translate import proxies
from live import HOST, Reply, Upstream, closed_port, stop

pytestmark = pytest.mark.sandbox

CALLER_ID = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
SERVER_ID = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"


def sidecar_pod(app: str, app_port: int) -> Pod:
    return Pod(
        name=f"{app}-v1-mtls-0",
        namespace="default",
        deployment=f"{app}-v1",
        labels={"app": app, "version": "v1"},
        service_account=f"bookinfo-{app}",
        app_port=app_port,
        container_ports={"http": 9080},
        sidecar=SidecarPorts(closed_port(), closed_port(), closed_port()),
    )


@dataclass
class Sidecar:
    pod: Pod
    xds_dir: Path
    admin: admin.EnvoyAdmin
    process: subprocess.Popen[bytes] | None = None


@dataclass
class TwoSidecars:
    caller: Sidecar
    server: Sidecar
    app: Upstream
    version: int = 1

    def mesh(self, *istio_yaml: str) -> Mesh:
        resources: dict[str, list[dict]] = {}
        for text in istio_yaml:
            for document in yaml.safe_load_all(text):
                document.setdefault("metadata", {}).setdefault("namespace", "default")
                resources.setdefault(document["kind"], []).append(document)
        services = tuple(
            Service(name, "default", (ServicePort(9080, "http"),), {"app": name})
            for name in ("productpage", "reviews")
        )
        return Mesh(
            services=services,
            pods=(self.caller.pod, self.server.pod),
            gateway=Gateway(),
            istio={kind: tuple(documents) for kind, documents in resources.items()},
        )

    def write(self, the_mesh: Mesh) -> None:
        for sidecar in (self.caller, self.server):
            files = proxies.ProxyFiles(
                xds_dir=sidecar.xds_dir,
                access_log=str(sidecar.xds_dir / "access.log"),
                node_id=bootstrap.sidecar_node_id(sidecar.pod),
            )
            config = proxies.sidecar_config(the_mesh, sidecar.pod, files)
            xds_files.write_all(
                sidecar.xds_dir,
                str(self.version),
                listeners=config.listeners,
                clusters=config.clusters,
                route_configs=config.routes,
            )

    def apply(self, *istio_yaml: str) -> None:
        """The new configuration on both sidecars, once both have acknowledged it."""
        self.version += 1
        since = {id(s): s.admin.snapshot() for s in (self.caller, self.server)}
        self.write(self.mesh(*istio_yaml))
        for sidecar in (self.caller, self.server):
            sidecar.admin.wait_for_version(str(self.version), timeout=10, since=since[id(sidecar)])

    def mesh_call(self, path: str = "/reviews/0") -> tuple[int, str]:
        """A call from productpage's app through its sidecar, as Bookinfo makes it."""
        connection = http.client.HTTPConnection(
            HOST, self.caller.pod.sidecar.outbound_port, timeout=10
        )
        try:
            connection.request("GET", f"http://reviews:9080{path}")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def plaintext_call(self) -> int:
        """A caller outside the mesh, straight to reviews' pod (its sidecar's inbound port)."""
        connection = http.client.HTTPConnection(
            HOST, self.server.pod.sidecar.inbound_port, timeout=10
        )
        try:
            connection.request("GET", "/reviews/0")
            return connection.getresponse().status
        finally:
            connection.close()

    def last_request_headers(self) -> dict[str, str]:
        return self.app.requests[-1].headers


def start(sidecar: Sidecar, log: Path) -> None:
    config = bootstrap.bootstrap(
        bootstrap.sidecar_node_id(sidecar.pod),
        bootstrap.sidecar_cluster_name(sidecar.pod),
        sidecar.pod.sidecar.admin_port,
        sidecar.xds_dir,
    )
    path = sidecar.xds_dir / "bootstrap.json"
    path.write_text(json.dumps(config))
    sidecar.process = subprocess.Popen(
        binary.run_command(path, log_path=log),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoSidecars]:
    binary.envoy_binary()  # or a clear error naming the install command
    directory = tmp_path_factory.mktemp("mtls")
    ca = CertificateAuthority.load_or_create(directory / "ca")
    app = Upstream(reply=Reply(body="reviews"))
    sidecars = []
    for name, app_port in (("productpage", closed_port()), ("reviews", app.port)):
        pod = sidecar_pod(name, app_port)
        xds_dir = directory / name
        xds_dir.mkdir()
        ensure_workload_secrets(ca, xds_dir, pod.spiffe_id, ttl=timedelta(hours=1))
        log = directory / f"{name}.envoy.log"
        sidecars.append(
            Sidecar(
                pod, xds_dir, admin.EnvoyAdmin(pod.sidecar.admin_port, proxy=name, log_path=log)
            )
        )
    state = TwoSidecars(caller=sidecars[0], server=sidecars[1], app=app)
    state.write(state.mesh())
    try:
        for sidecar in sidecars:
            start(sidecar, directory / f"{sidecar.pod.labels['app']}.envoy.log")
        for sidecar in sidecars:
            sidecar.admin.wait_for_version("1", timeout=15)
        yield state
    finally:
        for sidecar in sidecars:
            if sidecar.process is not None:
                stop(sidecar.process)
        app.close()


@pytest.fixture
def sidecars(pair: TwoSidecars) -> TwoSidecars:
    """Both sidecars back on the default configuration: no PeerAuthentication, no rules."""
    pair.apply()
    pair.app.requests.clear()
    return pair


STRICT_NAMESPACE = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
"""


def test_sidecars_talk_mutual_tls_by_default_and_the_app_sees_who_called(
    sidecars: TwoSidecars,
) -> None:
    assert sidecars.mesh_call() == (200, "reviews")

    xfcc = sidecars.last_request_headers()["x-forwarded-client-cert"]
    assert f"URI={CALLER_ID}" in xfcc  # the caller's identity, from its certificate
    assert f"By={SERVER_ID}" in xfcc  # and the server's own


def test_permissive_also_accepts_plaintext_from_outside_the_mesh(sidecars: TwoSidecars) -> None:
    assert sidecars.plaintext_call() == 200
    assert "x-forwarded-client-cert" not in sidecars.last_request_headers()


def test_strict_refuses_plaintext_while_mesh_traffic_flows(sidecars: TwoSidecars) -> None:
    sidecars.apply(STRICT_NAMESPACE)

    # No filter chain matches a plaintext connection: Envoy closes it without an HTTP answer,
    # which curl reports as "(56) Recv failure: Connection reset by peer".
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        sidecars.plaintext_call()
    assert sidecars.mesh_call() == (200, "reviews")


def test_a_certificate_from_another_mesh_is_refused_under_strict(
    sidecars: TwoSidecars, tmp_path: Path
) -> None:
    sidecars.apply(STRICT_NAMESPACE)
    stranger = CertificateAuthority.load_or_create(tmp_path / "other-ca")
    certificate = stranger.issue(CALLER_ID)  # the right name, signed by the wrong root
    (tmp_path / "cert.pem").write_bytes(certificate.chain_pem)
    (tmp_path / "key.pem").write_bytes(certificate.key_pem)
    context = ssl.create_default_context(cafile=sidecars.server.xds_dir / "root-cert.pem")
    context.check_hostname = False
    context.set_alpn_protocols(["istio-peer-exchange", "istio"])
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    connection = http.client.HTTPSConnection(
        HOST, sidecars.server.pod.sidecar.inbound_port, context=context, timeout=10
    )
    with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)):
        connection.request("GET", "/reviews/0")
        connection.getresponse()
    connection.close()


def test_a_client_told_to_disable_tls_cannot_reach_a_strict_server(sidecars: TwoSidecars) -> None:
    sidecars.apply(
        STRICT_NAMESPACE,
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: DISABLE}}
""",
    )

    status, body = sidecars.mesh_call()

    assert status == 503  # Envoy's answer when the server resets the connection
    assert "reset" in body


def test_a_port_level_exception_lets_plaintext_in_under_a_strict_namespace(
    sidecars: TwoSidecars,
) -> None:
    sidecars.apply(
        STRICT_NAMESPACE,
        """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-9080-open}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
  portLevelMtls: {"9080": {mode: DISABLE}}
""",
    )

    assert sidecars.plaintext_call() == 200
    # Auto-mTLS sees the port is DISABLE and sends plaintext, so the mesh call still works.
    assert sidecars.mesh_call() == (200, "reviews")
    assert "x-forwarded-client-cert" not in sidecars.last_request_headers()
