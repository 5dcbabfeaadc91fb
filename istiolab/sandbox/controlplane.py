"""The sandbox's control plane: the API server, the controllers, istiod and the kubelet, in one.

On every change (an apply, a delete, a label, a restart) it does what a cluster would:
1. the store keeps the resources (store.py), validated as a whole or not at all;
2. the registry turns Deployments into pods and decides their sidecars (registry.py);
3. every proxy's configuration is rebuilt from the registry and the Istio resources
   (translate/) and written to the files that proxy watches, with one new version;
4. pods that are new are started (their sidecar first, then the app), pods that are gone stopped;
5. the change is done when every proxy has acknowledged the new version (or, if one refused it,
   the apply fails with the proxy's reason).

Processes: each pod's app (`python -m bookinfo serve ...`), each sidecar's Envoy, the ingress
gateway's Envoy on 127.0.0.1:8080, one more Envoy standing in for kube-proxy, through which
apps without a sidecar reach Services (and which forwards 127.0.0.1:9080 to productpage), and
the telemetry process: the Zipkin collector on 127.0.0.1:9411 and the request metrics.

It is also the mesh's certificate authority, as istiod is: every sidecar and the gateway get a
certificate for their workload's SPIFFE identity, renewed in the background at half its life.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import IstiolabError
from ..validation import format_report
from . import telemetry
from .envoy import admin as envoy_admin
from .envoy import binary, bootstrap, xds_files
from .model import Gateway, Pod
from .registry import PortAllocator, Registry
from .security.ca import CertificateAuthority
from .security.workload_certs import cert_ttl_from_environ, ensure_workload_secrets
from .store import Store, load_documents
from .supervisor import BACKOFF, RUNNING, STARTING, ProcessSpec, Supervisor
from .telemetry.access_log import LOG_SUFFIX
from .telemetry.workloads import write_workloads
from .translate import proxies, tracing

REPO_ROOT = Path(__file__).resolve().parents[2]
INITIAL_STAGE = REPO_ROOT / "manifests" / "stages" / "00-bookinfo"
# Installed with Istio, as cluster-up.sh does on kind: the mesh-wide tracing settings.
MESH_TELEMETRY = REPO_ROOT / "manifests" / "istio" / "telemetry.yaml"
GATEWAY_PORT = 8080
ZIPKIN_PORT = 9411
METRICS_PORT = 15020  # pilot-agent's merged-metrics port; here one endpoint for the whole mesh
TELEMETRY = "istio-system.telemetry"
# The collector keeps this many spans in memory (about 3 KB each): some 2 000 Bookinfo traces.
MAX_SPANS = 20_000
ACK_TIMEOUT = 20.0
READY_TIMEOUT = 60.0
KUBE_PROXY = "kube-proxy"
INFRA_PORT_RANGE = (25000, 25999)  # the pods' ports are the registry's, 20000-24999
GATEWAY = "istio-system.istio-ingressgateway"


class ControlPlane:
    def __init__(
        self,
        state_dir: Path,
        gateway_port: int = GATEWAY_PORT,
        port_forward_port: int = proxies.PORT_FORWARD_PORT,
        zipkin_port: int = ZIPKIN_PORT,
        metrics_port: int = METRICS_PORT,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.store = Store.load(self.state_dir / "resources")
        self.registry = Registry.load(self.state_dir / "registry")
        self.supervisor = Supervisor(self.state_dir / "processes")
        self.gateway_port = gateway_port
        self.port_forward_port = port_forward_port
        self.zipkin_port = zipkin_port
        self.metrics_port = metrics_port
        self.ca = CertificateAuthority.load_or_create(self.state_dir / "ca")
        self.cert_ttl = cert_ttl_from_environ()
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self.version = ""  # of the configuration last written to every proxy
        # The gateway's and kube-proxy's own ports, kept apart from the pods' (the registry frees
        # any port that no pod owns) and persisted, so a restarted control plane finds the
        # proxies it adopts where they listen.
        ports = PortAllocator(*INFRA_PORT_RANGE, state_dir=self.state_dir / "infra")
        self.kube_proxy_port = ports.port_of(f"{KUBE_PROXY}/listener") or ports.allocate(
            f"{KUBE_PROXY}/listener"
        )
        self.kube_proxy_admin = ports.port_of(f"{KUBE_PROXY}/admin") or ports.allocate(
            f"{KUBE_PROXY}/admin"
        )
        self.gateway_admin = ports.port_of("gateway/admin") or ports.allocate("gateway/admin")
        ports.save()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bring the mesh to the stored state (stage 00 on the very first start)."""
        with self._lock:
            if self.store.revision == 0:  # a new sandbox: nothing applied yet
                result = self.store.apply(
                    load_documents(paths=[MESH_TELEMETRY], kustomize_dirs=[INITIAL_STAGE])
                )
                if not result.ok:
                    raise IstiolabError(
                        "the initial stage does not validate:\n" + format_report(result.report)
                    )
            self.sync()
        threading.Thread(
            target=self._renew_certificates, name="certificate-renewal", daemon=True
        ).start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:  # not while a renewal writes certificates
            self.supervisor.close(stop_processes=True)

    # ------------------------------------------------------------------ certificates

    def _renew_certificates(self) -> None:
        """Renew each proxy's certificate once it is past half its life, as pilot-agent does.

        A proxy reads its new certificate from its SDS file without a restart; connections open
        at that moment keep going, new ones use the new certificate.
        """
        interval = min(30.0, max(1.0, self.cert_ttl.total_seconds() / 10))
        while not self._stopping.wait(interval):
            with self._lock:
                if self._stopping.is_set():
                    return
                for xds_dir, spiffe_id in self._identities():
                    try:
                        ensure_workload_secrets(self.ca, xds_dir, spiffe_id, ttl=self.cert_ttl)
                    except (OSError, ValueError) as error:  # e.g. a full disk: try again later
                        print(f"renewing {spiffe_id} failed: {error}", file=sys.stderr, flush=True)

    def _identities(self) -> list[tuple[Path, str]]:
        """Every proxy that holds a workload certificate: the gateway and each sidecar."""
        found = [(self._xds_dir(GATEWAY), self._gateway().spiffe_id)]
        for pod in self.registry.pods:
            if pod.sidecar:
                found.append((self._xds_dir(_sidecar_name(pod)), pod.spiffe_id))
        return found

    # ------------------------------------------------------------------ the sync loop

    def sync(self) -> None:
        """Reconcile pods, rewrite every proxy's configuration, start and stop processes, and
        return once every proxy runs the new configuration."""
        with self._lock:
            change = self.registry.reconcile(self.store)
            for pod in change.deleted:
                self.supervisor.remove(_app_name(pod))
                if pod.sidecar:
                    self.supervisor.remove(_sidecar_name(pod))
                    shutil.rmtree(self._xds_dir(_sidecar_name(pod)), ignore_errors=True)
            mesh = self.registry.mesh(self.store, self._gateway())
            version = self.version = str(time.time_ns())
            pending: list[tuple[envoy_admin.EnvoyAdmin, envoy_admin.ConfigState | None]] = []
            write_workloads(self._telemetry_dir() / telemetry.WORKLOADS_FILE, mesh)
            self._ensure_telemetry()

            def push(
                name: str,
                admin_port: int,
                config: proxies.ProxyConfig,
                node: str,
                service_cluster: str,
                env: dict[str, str] | None = None,
            ) -> None:
                xds_dir = self._xds_dir(name)
                admin = envoy_admin.EnvoyAdmin(
                    admin_port, proxy=name, log_path=self._log(name + ".envoy")
                )
                since = admin.snapshot() if self._running(name) else None
                xds_files.write_all(
                    xds_dir,
                    version,
                    listeners=config.listeners,
                    clusters=config.clusters,
                    route_configs=config.routes,
                )
                self._ensure_envoy(name, admin_port, node, service_cluster, xds_dir, env)
                pending.append((admin, since))

            push(
                KUBE_PROXY,
                self.kube_proxy_admin,
                proxies.kube_proxy_config(
                    mesh,
                    self.kube_proxy_port,
                    self._access_log(KUBE_PROXY),
                    self.port_forward_port,
                ),
                "router~127.0.0.1~kube-proxy.kube-system~kube-system.svc.cluster.local",
                "kube-proxy.kube-system",
            )
            gateway_node = bootstrap.gateway_node_id(mesh.gateway)
            push(
                GATEWAY,
                self.gateway_admin,
                proxies.gateway_config(
                    mesh, self._proxy_files(GATEWAY, gateway_node, mesh.gateway.spiffe_id)
                ),
                gateway_node,
                bootstrap.gateway_cluster_name(mesh.gateway),
                tracing.proxy_environment(
                    mesh.gateway.name, mesh.gateway.namespace, mesh.gateway.service_account
                ),
            )
            for pod in mesh.pods:
                if pod.sidecar:
                    name = _sidecar_name(pod)
                    node = bootstrap.sidecar_node_id(pod)
                    files = self._proxy_files(name, node, pod.spiffe_id)
                    config = proxies.sidecar_config(mesh, pod, files)
                    cluster = bootstrap.sidecar_cluster_name(pod)
                    env = tracing.proxy_environment(pod.name, pod.namespace, pod.service_account)
                    push(name, pod.sidecar.admin_port, config, node, cluster, env)
            for pod in mesh.pods:
                self._ensure_app(pod)
            for admin, since in pending:
                admin.wait_for_version(version, ACK_TIMEOUT, since=since)
            for admin, _ in pending:
                admin.wait_until_drained(binary.DRAIN_TIME_S + 1.0)
            self.supervisor.wait_ready(
                [status.name for status in self.supervisor.status()], timeout=READY_TIMEOUT
            )

    # ------------------------------------------------------------------ processes

    def _gateway(self) -> Gateway:
        return Gateway(port=self.gateway_port, admin_port=self.gateway_admin)

    def _proxy_files(self, name: str, node_id: str, spiffe_id: str) -> proxies.ProxyFiles:
        """A mesh proxy's files, its certificate issued (or renewed) first: its listeners and
        clusters name the certificate's SDS files, which must exist when Envoy reads them."""
        xds_dir = self._xds_dir(name)
        ensure_workload_secrets(self.ca, xds_dir, spiffe_id, ttl=self.cert_ttl)
        return proxies.ProxyFiles(
            xds_dir=xds_dir,
            access_log=self._access_log(name),
            node_id=node_id,
            telemetry_log=str(self._telemetry_dir() / f"{name}{LOG_SUFFIX}"),
            zipkin_port=self.zipkin_port,
        )

    def _ensure_telemetry(self) -> None:
        """The Zipkin collector and the request metrics: one process, started before the
        proxies that report to it."""
        if self._running(TELEMETRY):
            return
        self.supervisor.start(
            ProcessSpec(
                TELEMETRY,
                [
                    sys.executable,
                    "-m",
                    "istiolab.sandbox.telemetry",
                    "--state-dir",
                    str(self.state_dir),
                    "--zipkin-port",
                    str(self.zipkin_port),
                    "--metrics-port",
                    str(self.metrics_port),
                    "--max-spans",
                    str(MAX_SPANS),
                ],
                log_path=self._log(TELEMETRY),
                ready=("http", f"http://127.0.0.1:{self.zipkin_port}/health"),
                kind="telemetry",
                ports=(self.zipkin_port, self.metrics_port),
            ),
            replace=True,
        )

    def _running(self, name: str) -> bool:
        """Managed and not given up on: running, starting, or waiting out a crash back-off."""
        return any(
            s.name == name and s.state in (STARTING, RUNNING, BACKOFF)
            for s in self.supervisor.status()
        )

    def _ensure_envoy(
        self,
        name: str,
        admin_port: int,
        node: str,
        service_cluster: str,
        xds_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start the proxy if it does not run. `service_cluster` is Istio's service cluster
        (productpage.default): the name its spans carry as their service in traces; `env` what
        the istio-proxy container's environment would add."""
        if self._running(name):
            return
        config = bootstrap.bootstrap(node, service_cluster, admin_port, xds_dir)
        bootstrap_path = xds_dir / "bootstrap.json"
        bootstrap_path.write_text(json.dumps(config, indent=2))
        self.supervisor.start(
            ProcessSpec(
                name,
                binary.run_command(bootstrap_path, log_path=self._log(name + ".envoy")),
                env,
                log_path=self._log(name),
                ready=("http", f"http://127.0.0.1:{admin_port}/ready"),
                kind="proxy",
                ports=(admin_port,),
            ),
            replace=True,
        )

    def _ensure_app(self, pod: Pod) -> None:
        name = _app_name(pod)
        if self._running(name):
            return
        proxy_port = pod.sidecar.outbound_port if pod.sidecar else self.kube_proxy_port
        launch = self.registry.launch(pod).with_proxy(f"http://127.0.0.1:{proxy_port}")
        base = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
        self.supervisor.start(
            ProcessSpec(
                name,
                launch.command,
                launch.environment(base),
                log_path=self._log(name),
                ready=("tcp", pod.app_port),
                kind="app",
                ports=(pod.app_port,),
                inherit_env=False,
            ),
            replace=True,
        )

    def _xds_dir(self, name: str) -> Path:
        path = self.state_dir / "xds" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _log(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def _access_log(self, name: str) -> str:
        return str(self.state_dir / "logs" / f"{name}.access.log")

    def _telemetry_dir(self) -> Path:
        path = telemetry.telemetry_dir(self.state_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ the API

    def status(self, _: dict[str, Any]) -> dict[str, Any]:
        processes = {s.name: s for s in self.supervisor.status()}
        workloads = []
        for pod in self.registry.pods:
            app = processes.get(_app_name(pod))
            proxy = processes.get(_sidecar_name(pod)) if pod.sidecar else None
            parts = [p for p in (app, proxy) if p is not None]
            workloads.append(
                {
                    "namespace": pod.namespace,
                    "name": pod.name,
                    "ready": f"{sum(p.state == 'running' for p in parts)}/{1 + bool(pod.sidecar)}",
                    "restarts": sum(p.restarts for p in parts),
                    "sidecar": bool(pod.sidecar),
                    "app_port": pod.app_port,
                    "proxy_ports": [pod.sidecar.inbound_port, pod.sidecar.outbound_port]
                    if pod.sidecar
                    else [],
                    "config": self._config_state(pod),
                }
            )
        return {
            "workloads": workloads,
            "gateway": f"http://127.0.0.1:{self.gateway_port}",
            "port_forward": f"http://127.0.0.1:{self.port_forward_port}",
            "zipkin": f"http://127.0.0.1:{self.zipkin_port}",
            "metrics": f"http://127.0.0.1:{self.metrics_port}/stats/prometheus",
            "revision": self.store.revision,
        }

    def _config_state(self, pod: Pod) -> str:
        """Like istioctl proxy-status: SYNCED when the sidecar runs the latest configuration."""
        if pod.sidecar is None:
            return "-"
        admin = envoy_admin.EnvoyAdmin(pod.sidecar.admin_port, timeout=1.0)
        try:
            return "SYNCED" if admin.applied_versions().all_at(self.version) else "STALE"
        except envoy_admin.AdminUnavailable:
            return "NOT RUNNING"

    def apply(self, body: dict[str, Any]) -> list[str]:
        documents = load_documents(
            paths=body.get("files", []), kustomize_dirs=body.get("kustomize", [])
        )
        with self._lock:
            result = self.store.apply(documents, namespace=body.get("namespace"))
            if not result.ok:
                raise IstiolabError(
                    format_report(result.report) + "\nNothing was applied: the mesh is unchanged."
                )
            if result.changed:
                self.sync()
            return result.lines()

    def delete(self, body: dict[str, Any]) -> list[str]:
        with self._lock:
            if body.get("files"):
                result = self.store.delete_documents(
                    load_documents(paths=body["files"]), namespace=body.get("namespace")
                )
                lines = list(result.lines)
                if result.errors:
                    self.sync()
                    raise IstiolabError("\n".join([*lines, *result.errors]))
            else:
                lines = [
                    self.store.delete(
                        body["kind"], body.get("namespace") or "default", body["name"]
                    )
                ]
            self.sync()
            return lines

    def get(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        namespace = body.get("namespace")
        if body.get("kind", "").lower() in ("pod", "pods", "po"):
            return [self.registry.pod_manifest(p) for p in self.registry.pods_in(namespace)]
        objects = self.store.get(body["kind"], namespace, body.get("name"))
        return [obj.manifest() for obj in objects]

    def label(self, body: dict[str, Any]) -> str:
        with self._lock:
            result = self.store.label(
                body["kind"],
                body.get("namespace"),
                body["name"],
                body["labels"],
                overwrite=body.get("overwrite", False),
            )
            self.sync()
            return result.line

    def rollout_restart(self, body: dict[str, Any]) -> list[str]:
        with self._lock:
            lines = self.store.rollout_restart(body.get("namespace") or "default", body.get("name"))
            self.sync()
            return lines

    def proxies(self, _: dict[str, Any]) -> list[dict[str, Any]]:
        """Every proxy and pod with where to reach it and where its logs are, for the CLI's
        proxy-config and logs commands and for the sandbox target."""
        logs = self.state_dir / "logs"
        entries: list[dict[str, Any]] = [
            {
                "name": "istio-ingressgateway",
                "namespace": "istio-system",
                "kind": "gateway",
                "labels": dict(self._gateway().labels),
                "admin_port": self.gateway_admin,
                "listen_port": self.gateway_port,
                "access_log": self._access_log(GATEWAY),
                "envoy_log": str(self._log(GATEWAY + ".envoy")),
            }
        ]
        for pod in self.registry.pods:
            entry: dict[str, Any] = {
                "name": pod.name,
                "namespace": pod.namespace,
                "kind": "pod",
                "labels": dict(pod.labels),
                "service_account": pod.service_account,
                "app_port": pod.app_port,
                "endpoint_port": pod.endpoint_port,
                "app_log": str(logs / f"{_app_name(pod)}.log"),
            }
            if pod.sidecar:
                name = _sidecar_name(pod)
                entry.update(
                    admin_port=pod.sidecar.admin_port,
                    outbound_port=pod.sidecar.outbound_port,
                    inbound_port=pod.sidecar.inbound_port,
                    access_log=self._access_log(name),
                    envoy_log=str(self._log(name + ".envoy")),
                )
            entries.append(entry)
        return entries

    def routes(self) -> dict[str, Any]:
        return {
            "/proxies": self.proxies,
            "/status": self.status,
            "/apply": self.apply,
            "/delete": self.delete,
            "/get": self.get,
            "/label": self.label,
            "/rollout-restart": self.rollout_restart,
        }


_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def _app_name(pod: Pod) -> str:
    return f"{pod.namespace}.{pod.name}"


def _sidecar_name(pod: Pod) -> str:
    return f"{pod.namespace}.{pod.name}.istio-proxy"
