"""Benchmark the sandbox mesh: cold start, apply-to-traffic, latency per sidecar hop, memory.

    .venv/bin/python benchmarks/sandbox_bench.py [--repeat N] [--applies N] [--requests N]
                                                 [--out FILE]

Everything is measured in one run, on one machine, side by side:

1. cold start: `lifecycle.up()` on a new state directory until productpage first answers 200
   through the port-forward port, --repeat times (each on its own new state directory);
2. apply to traffic: with sidecars injected and the bookinfo Gateway and the reviews
   DestinationRule applied, `istiolab apply -f` alternately routes reviews to v1 and to v3; each
   is timed from the start of the command until a page fetched through the ingress gateway shows
   the new version (--applies times), next to how long the command itself takes;
3. latency per sidecar hop: GET /reviews/0 to the reviews v1 app directly, through its sidecar's
   inbound listener, and through productpage's sidecar (as an HTTP proxy) and then the reviews
   sidecar, --requests sequential keep-alive requests each, interleaved;
4. memory: PSS and RSS of every process the sandbox runs (the control plane, every app with its
   gunicorn worker, every sidecar, the ingress gateway, the kube-proxy stand-in and the
   telemetry process);
5. mTLS on versus off: GET /reviews/0 through productpage's sidecar and the reviews sidecar, to
   two subsets of the same reviews v1 pod, one with Istio's mutual TLS (the default) and one
   with `tls: DISABLE`, --requests interleaved keep-alive requests each;
6. the trace collector's ingest: spans shaped like Envoy's, in Envoy's batches, POSTed at the
   rate 500 Bookinfo requests/s produce (spans per request counted on a real traced request),
   for INGEST_SECONDS, then as fast as the client can; every span must be stored.

Every sandbox runs on free ports in a temporary directory and is stopped (`lifecycle.down`) in a
`finally`; the benchmark then checks that none of its processes is left. It writes JSON to
--out (default benchmarks/results/sandbox-<timestamp>.json) and prints the figures, the ratios
and each goal as met or NOT MET. See benchmarks/README.md for how to read the output.

This is a benchmark, not a test: it exits 0 whether or not the goals are met (1 if the sandbox
could not be started or measured).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from istiolab.errors import IstiolabError
from istiolab.sandbox import api, lifecycle
from istiolab.sandbox.api import INFO_FILE
from istiolab.sandbox.envoy import binary
from istiolab.sandbox.supervisor import describe_exit

ROOT = Path(__file__).resolve().parent.parent
# The Bookinfo resources the tests apply live in tests/bookinfo_samples.py (pure data, no pytest):
# the benchmark applies the very same YAML rather than a copy that could drift from it.
sys.path.insert(0, str(ROOT / "tests"))
from bookinfo_samples import BOOKINFO_GATEWAY, REVIEWS_SUBSETS, virtual_service_to  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
HOST = "127.0.0.1"

FIRST_PAGE_TIMEOUT_S = 60.0  # after up() returned, how long productpage may take to answer 200
POLL_INTERVAL_S = 0.02  # between two page requests while waiting for a change
APPLY_TIMEOUT_S = 30.0  # an apply whose effect is not seen within this is an error
REQUEST_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 120.0
LATENCY_WARMUP = 50  # unmeasured requests per path before the latency run
CLI_BASELINE_RUNS = 5
STOP_GRACE_S = 10.0  # after down(), how long a left-over process may take to disappear

GOAL_CPUS = 2
GOAL_COLD_START_S = 5.0
GOAL_APPLY_P95_S = 1.0
GOAL_HOP_P50_MS = 1.0
GOAL_MEMORY_MB = 600.0
GOAL_MTLS_EXTRA_P50_MS = 0.5
GOAL_INGEST_REQUESTS_PER_S = 500
INGEST_SECONDS = 10.0
INGEST_BATCH = 100  # spans per POST: the proxies' tracing.zipkin.min_flush_spans
INGEST_SENDERS = 4

STAR = "glyphicon glyphicon-star"
SERVED_BY = "Reviews served by: reviews-"

# Every request traced: the mesh-wide Telemetry at 100%, to count one request's spans.
TRACE_ALL = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 100.0
"""

# The reviews subsets and Istio's bookinfo-gateway.yaml, as the tests apply them.
DESTINATION_RULE_AND_GATEWAY = REVIEWS_SUBSETS + "---" + BOOKINFO_GATEWAY


class BenchmarkError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _percentile(values: list[float], percent: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def page_version(html: str) -> str:
    """Which reviews version a productpage shows: v1 (no stars), v2 (black), v3 (red), or "?".

    The "Reviews served by" line names the pod; the stars must agree with it, so a page whose
    reviews failed (no such line) or that contradicts itself is "?".
    """
    if SERVED_BY not in html:
        return "?"
    served = html.split(SERVED_BY, 1)[1][:2]
    stars = {
        "v1": STAR not in html,
        "v2": STAR in html and "color: black" in html,
        "v3": STAR in html and "color: red" in html,
    }
    return served if stars.get(served) else "?"


class KeepAlive:
    """One keep-alive HTTP/1.1 connection; reconnects once if the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.connects = 0

    def get(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_S)
                self.connects += 1
            try:
                self.conn.request("GET", target, headers=headers or {})
                response = self.conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 0:
                    continue  # an idle keep-alive connection the server had closed
                raise
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            if response.will_close:
                self.close()
            return response.status, body
        raise AssertionError("not reached: the second attempt returns or raises")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --------------------------------------------------------------------------------------------
# One sandbox
# --------------------------------------------------------------------------------------------


class Sandbox:
    """A sandbox on free ports in its own state directory, driven like a learner drives it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.gateway_port = free_port()
        self.forward_port = free_port()
        self.zipkin_port = free_port()
        self.metrics_port = free_port()
        self.started = False
        # Every process seen (pid -> start time), to check that down() stopped them all.
        self.known: dict[int, str] = {}
        self.commands: list[subprocess.Popen[str]] = []  # istiolab commands this run started

    def up(self) -> dict[str, Any]:
        self.started = True  # even if up() fails half-way, down() must clean up
        return lifecycle.up(
            self.gateway_port,
            self.forward_port,
            state_dir=self.state_dir,
            zipkin_port=self.zipkin_port,
            metrics_port=self.metrics_port,
        )

    def down(self) -> None:
        for command in self.commands:  # one still running if the run was interrupted
            if command.poll() is None:
                command.kill()
                command.wait()
        if self.started:
            self.remember_pids()
            lifecycle.down(self.state_dir)

    def cli(self, *args: str) -> subprocess.Popen[str]:
        self.commands = [c for c in self.commands if c.poll() is None]
        command = subprocess.Popen(
            [*istiolab_command(), *args],
            env={**os.environ, "ISTIOLAB_STATE_DIR": str(self.state_dir)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.commands.append(command)
        return command

    def run_cli(self, *args: str) -> float:
        """Run an istiolab command to the end; its wall time in seconds."""
        began = time.perf_counter()
        process = self.cli(*args)
        try:
            out, err = process.communicate(timeout=CLI_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise BenchmarkError(f"istiolab {' '.join(args)} did not finish") from None
        elapsed = time.perf_counter() - began
        if process.returncode != 0:
            raise BenchmarkError(f"istiolab {' '.join(args)} failed:\n{out}{err}")
        return elapsed

    def api(self, path: str, body: dict[str, Any] | None = None) -> Any:
        port = lifecycle.control_plane_port(self.state_dir)
        if port is None:
            raise BenchmarkError("the sandbox's control plane is not running")
        return api.call(port, path, body)

    def records(self) -> list[dict[str, Any]]:
        path = self.state_dir / "processes" / "processes.json"
        try:
            return json.loads(path.read_text())["processes"]
        except (OSError, ValueError, KeyError):
            return []

    def daemon_pid(self) -> int | None:
        try:
            return int(json.loads((self.state_dir / INFO_FILE).read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def remember_pids(self) -> None:
        for pid in mesh_processes(self)["pids"]:
            fields = _stat_fields(pid)
            if fields is not None:
                self.known[pid] = fields[19]

    def log_tail(self, lines: int = 15) -> str:
        log = self.state_dir / "logs" / "controlplane.log"
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "  (no control plane log)"
        return "\n".join(f"  {line}" for line in tail)


def istiolab_command() -> list[str]:
    script = Path(sys.executable).parent / "istiolab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "istiolab"]


# --------------------------------------------------------------------------------------------
# 1. Cold start
# --------------------------------------------------------------------------------------------


def first_200(port: int, deadline: float) -> tuple[float, bool, int]:
    """Poll GET /productpage on new connections until it answers 200.

    Returns when (perf_counter), whether that first page was complete (reviews shown), and how
    many requests it took.
    """
    attempts = 0
    last = "no answer"
    while time.perf_counter() < deadline:
        attempts += 1
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.request("GET", "/productpage")
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                return (
                    time.perf_counter(),
                    page_version(body.decode(errors="replace")) != "?",
                    attempts,
                )
            last = f"status {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            last = str(exc) or type(exc).__name__
        finally:
            conn.close()
        time.sleep(POLL_INTERVAL_S)
    raise BenchmarkError(f"productpage did not answer 200 on port {port} (last: {last})")


def cold_start(box: Sandbox) -> dict[str, Any]:
    """Time one cold `up` (new state directory) until productpage's first 200."""
    wall = time.time()
    began = time.perf_counter()
    box.up()
    returned = time.perf_counter()
    seen, complete, attempts = first_200(box.forward_port, returned + FIRST_PAGE_TIMEOUT_S)
    # Where the time went, from what the control plane left in its state directory: when it
    # spawned its first and last process (wall clock), and when it wrote controlplane.json,
    # which it does once every proxy acknowledged its configuration and every process is ready.
    records = box.records()
    spawned = [r["started_at"] for r in records if r.get("started_at")]
    try:
        ready = (box.state_dir / INFO_FILE).stat().st_mtime - wall
    except OSError:
        ready = None
    return {
        "first_200_s": round(seen - began, 3),
        "up_returned_s": round(returned - began, 3),
        "first_process_spawned_s": _round(min(spawned) - wall) if spawned else None,
        "last_process_spawned_s": _round(max(spawned) - wall) if spawned else None,
        "control_plane_ready_s": _round(ready),
        "first_page_complete": complete,
        "requests_until_200": attempts,
        "processes": len(spawned),
        # A process that crashed while the sandbox started (its started_at is then the restart's).
        "restarted": {
            r["name"]: f"restarted {r['restarts']}x, last {describe_exit(r.get('last_exit'))}"
            + _last_log_line(r)
            for r in records
            if r.get("restarts")
        },
    }


def _last_log_line(record: dict[str, Any]) -> str:
    """The last error a process logged (Envoy's own log first), to say why it crashed."""
    spec = record.get("spec", {})
    argv = spec.get("argv", [])
    logs = [argv[argv.index("--log-path") + 1]] if "--log-path" in argv[:-1] else []
    logs.append(spec.get("log_path") or "")
    for path in logs:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        # The supervisor's own notes ("--- istiolab ...") say that it exited, not why.
        errors = [
            line.strip()
            for line in lines
            if "error" in line.lower() and not line.startswith("--- istiolab")
        ]
        if errors:
            return f": {errors[-1][:200]}"
    return ""


# --------------------------------------------------------------------------------------------
# 2. Apply until the new behaviour shows in traffic
# --------------------------------------------------------------------------------------------


def fetch_version(client: KeepAlive) -> str:
    try:
        status, body = client.get("/productpage")
    except (OSError, http.client.HTTPException):
        return "error"
    return page_version(body.decode(errors="replace")) if status == 200 else f"HTTP {status}"


def wait_for_version(client: KeepAlive, version: str, timeout: float = APPLY_TIMEOUT_S) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if fetch_version(client) == version:
            return
        time.sleep(POLL_INTERVAL_S)
    raise BenchmarkError(f"the gateway never served reviews {version}")


def timed_apply(box: Sandbox, client: KeepAlive, path: Path, version: str) -> dict[str, Any]:
    """`istiolab apply -f path` while fetching pages through the gateway every POLL_INTERVAL_S.

    Seen = the end of the first response that shows `version`. The command's end is taken by a
    thread waiting on it, so it is exact whatever the page requests are doing.
    """
    began = time.perf_counter()
    process = box.cli("apply", "-f", str(path))
    exited: dict[str, Any] = {}

    def wait() -> None:
        try:
            exited["output"] = process.communicate(timeout=CLI_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            exited["output"] = process.communicate()
        exited["at"] = time.perf_counter()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    seen_at: float | None = None
    old_after_new = 0
    checked_after_exit: str | None = None
    while True:
        sent = time.perf_counter()
        shown = fetch_version(client)
        done = time.perf_counter()
        if shown == version:
            seen_at = seen_at or done
        elif seen_at is not None:
            old_after_new += 1
        if "at" in exited and process.returncode != 0:
            break
        if "at" in exited and sent > exited["at"]:
            checked_after_exit = shown  # the first request sent after the command returned
            if seen_at is not None:
                break
        if done - began > APPLY_TIMEOUT_S:
            break
        time.sleep(POLL_INTERVAL_S)
    waiter.join(CLI_TIMEOUT_S)
    if process.returncode != 0:
        out, err = exited.get("output", ("", ""))
        raise BenchmarkError(f"istiolab apply -f {path} failed:\n{out}{err}")
    if seen_at is None:
        raise BenchmarkError(f"reviews {version} not seen within {APPLY_TIMEOUT_S:.0f} s")
    return {
        "version": version,
        "seen_s": round(seen_at - began, 4),
        "apply_command_s": round(exited["at"] - began, 4),
        "seen_before_command_returned": seen_at < exited["at"],
        "first_page_after_return": checked_after_exit,
        "old_version_after_new": old_after_new,
    }


def api_apply(box: Sandbox, client: KeepAlive, path: Path, version: str) -> dict[str, Any]:
    """The same change through the control plane's API, in this process: no CLI around it."""
    began = time.perf_counter()
    box.api("/apply", {"files": [str(path)], "kustomize": [], "namespace": None})
    returned = time.perf_counter() - began
    return {"version": version, "api_s": round(returned, 4), "page_after": fetch_version(client)}


def apply_to_traffic(box: Sandbox, work: Path, applies: int) -> dict[str, Any]:
    files = {}
    for version in ("v1", "v3"):
        files[version] = work / f"reviews-{version}.yaml"
        files[version].write_text(virtual_service_to("reviews", version))
    client = KeepAlive(box.gateway_port)
    try:
        box.run_cli("apply", "-f", str(files["v3"]))  # creates the VirtualService, untimed
        wait_for_version(client, "v3")
        runs = []
        for index in range(applies):
            version = "v1" if index % 2 == 0 else "v3"
            runs.append(timed_apply(box, client, files[version], version))
        # Where the command's time goes: a CLI command that does almost nothing (`status`), and
        # the same applies straight through the API, without starting a Python CLI.
        baseline = [box.run_cli("status") for _ in range(CLI_BASELINE_RUNS)]
        direct = []
        current = runs[-1]["version"]
        for _ in range(max(2, min(applies, 10))):
            current = "v3" if current == "v1" else "v1"
            direct.append(api_apply(box, client, files[current], current))
    finally:
        client.close()
    seen = [r["seen_s"] for r in runs]
    command = [r["apply_command_s"] for r in runs]
    api_times = [r["api_s"] for r in direct]
    return {
        "applies": len(runs),
        "poll_interval_s": POLL_INTERVAL_S,
        "seen_s": _summary(seen),
        "apply_command_s": _summary(command),
        "command_share_of_seen_p50": _ratio(statistics.median(command), statistics.median(seen)),
        "seen_before_command_returned": sum(r["seen_before_command_returned"] for r in runs),
        "stale_page_after_return": sum(r["first_page_after_return"] != r["version"] for r in runs),
        "old_version_after_new": sum(r["old_version_after_new"] for r in runs),
        "cli_status_s": _summary(baseline),
        "api_apply_s": _summary(api_times),
        "cli_overhead_s_p50": _round(statistics.median(command) - statistics.median(api_times), 4),
        "api_apply_stale_page_after": sum(r["page_after"] != r["version"] for r in direct),
        "runs": runs,
        "api_runs": direct,
    }


def _summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": _round(_percentile(values, 50), 4),
        "p95": _round(_percentile(values, 95), 4),
        "max": _round(max(values), 4) if values else None,
        "mean": _round(statistics.fmean(values), 4) if values else None,
        "n": len(values),
    }


# --------------------------------------------------------------------------------------------
# 3. Latency per sidecar hop
# --------------------------------------------------------------------------------------------


def _pod(proxies: list[dict[str, Any]], **labels: str) -> dict[str, Any]:
    for entry in proxies:
        if entry["kind"] == "pod" and all(entry["labels"].get(k) == v for k, v in labels.items()):
            if "inbound_port" not in entry:
                raise BenchmarkError(f"pod {entry['name']} has no sidecar")
            return entry
    raise BenchmarkError(f"no pod labelled {labels}")


def hop_latency(box: Sandbox, requests: int) -> dict[str, Any]:
    proxies = box.api("/proxies")
    reviews = _pod(proxies, app="reviews", version="v1")
    productpage = _pod(proxies, app="productpage")
    paths = {
        "direct": (reviews["app_port"], "/reviews/0", {}),
        "server_sidecar": (reviews["inbound_port"], "/reviews/0", {}),
        "client_and_server_sidecars": (
            productpage["outbound_port"],
            "http://reviews:9080/reviews/0",
            {"Host": "reviews:9080"},
        ),
    }
    clients = {name: KeepAlive(port) for name, (port, _, _) in paths.items()}
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for index in range(LATENCY_WARMUP + requests):
            # Interleaved, one request per path per round, so that whatever else the machine
            # does during the run weighs on the three paths alike.
            for name, (_, target, headers) in paths.items():
                began = time.perf_counter()
                status, body = clients[name].get(target, headers)
                elapsed = time.perf_counter() - began
                if status != 200:
                    raise BenchmarkError(f"{name}: GET {target} answered {status}")
                if json.loads(body).get("podname") != reviews["name"]:
                    raise BenchmarkError(f"{name}: GET {target} was not answered by reviews v1")
                if index >= LATENCY_WARMUP:
                    latencies[name].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    figures = {}
    for name, values in latencies.items():
        figures[name] = {
            "p50_ms": _round(_percentile(values, 50) * 1000),
            "p99_ms": _round(_percentile(values, 99) * 1000),
            "mean_ms": _round(statistics.fmean(values) * 1000),
            "connections": clients[name].connects,
        }
    per_hop = {}
    for stat in ("p50_ms", "p99_ms", "mean_ms"):
        direct = figures["direct"][stat]
        one = figures["server_sidecar"][stat]
        two = figures["client_and_server_sidecars"][stat]
        per_hop[stat] = {
            "server_sidecar_minus_direct": _round(one - direct),
            "two_sidecars_minus_direct_halved": _round((two - direct) / 2),
        }
    return {
        "requests_per_path": requests,
        "warmup_per_path": LATENCY_WARMUP,
        "reviews_pod": reviews["name"],
        "targets": {
            name: {"port": port, "target": target} for name, (port, target, _) in paths.items()
        },
        "paths": figures,
        "ratios_to_direct": {
            name: {
                "p50": _ratio(figures[name]["p50_ms"], figures["direct"]["p50_ms"]),
                "p99": _ratio(figures[name]["p99_ms"], figures["direct"]["p99_ms"]),
            }
            for name in paths
        },
        "per_hop_ms": per_hop,
    }


# --------------------------------------------------------------------------------------------
# 5. mTLS on versus off
# --------------------------------------------------------------------------------------------

# Two subsets of the same pod, reviews v1: one reached with Istio's mutual TLS (auto-mTLS, the
# default), one with `tls: DISABLE`; a header picks the plaintext one. Both paths cross the same
# two sidecars, so the only difference is the TLS between them.
MTLS_ON_AND_OFF = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v1-plaintext
    labels: {version: v1}
    trafficPolicy: {tls: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {x-bench-tls: {exact: "off"}}}]
    route: [{destination: {host: reviews, subset: v1-plaintext}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""


def mtls_latency(box: Sandbox, work: Path, requests: int) -> dict[str, Any]:
    path = work / "mtls-on-and-off.yaml"
    path.write_text(MTLS_ON_AND_OFF)
    box.run_cli("apply", "-f", str(path))
    productpage = _pod(box.api("/proxies"), app="productpage")
    target = "http://reviews:9080/reviews/0"
    variants = {
        "mtls": {"Host": "reviews:9080"},
        "plaintext": {"Host": "reviews:9080", "x-bench-tls": "off"},
    }
    clients = {name: KeepAlive(productpage["outbound_port"]) for name in variants}
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for index in range(LATENCY_WARMUP + requests):
            for name, headers in variants.items():  # interleaved, as in 3.
                began = time.perf_counter()
                status, _ = clients[name].get(target, headers)
                elapsed = time.perf_counter() - began
                if status != 200:
                    raise BenchmarkError(f"{name}: GET {target} answered {status}")
                if index >= LATENCY_WARMUP:
                    latencies[name].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    # Proof that the two paths differ as intended: TLS handshakes on one cluster only.
    handshakes = _cluster_handshakes(productpage["admin_port"])
    if not handshakes.get("v1") or handshakes.get("v1-plaintext"):
        raise BenchmarkError(f"the mTLS and plaintext subsets did not behave so: {handshakes}")
    figures = {
        name: {
            "p50_ms": _round(_percentile(values, 50) * 1000),
            "p99_ms": _round(_percentile(values, 99) * 1000),
        }
        for name, values in latencies.items()
    }
    return {
        "requests_per_path": requests,
        "paths": figures,
        "tls_handshakes_by_subset": handshakes,
        "extra_ms": {
            stat: _round(figures["mtls"][stat] - figures["plaintext"][stat])
            for stat in ("p50_ms", "p99_ms")
        },
        "ratio_p50": _ratio(figures["mtls"]["p50_ms"], figures["plaintext"]["p50_ms"]),
    }


def _cluster_handshakes(admin_port: int) -> dict[str, int]:
    """TLS handshakes productpage's sidecar made, per reviews subset cluster."""
    with contextlib.closing(http.client.HTTPConnection(HOST, admin_port, timeout=5)) as admin:
        admin.request("GET", "/stats?format=json&filter=" + quote(r"reviews.*ssl\.handshake$"))
        stats = json.loads(admin.getresponse().read())["stats"]
    found = {}
    for stat in stats:
        subset = stat["name"].split("|")[2] if stat["name"].count("|") >= 3 else ""
        if subset:
            found[subset] = int(stat["value"])
    return found


# --------------------------------------------------------------------------------------------
# 6. The trace collector's ingest
# --------------------------------------------------------------------------------------------

RECORDED_SPANS = ROOT / "tests" / "fixtures" / "telemetry" / "envoy-span-posts.recorded.json"


def spans_per_request(box: Sandbox) -> int:
    """How many spans one Bookinfo page makes, counted on a real traced request."""
    trace_id = os.urandom(16).hex()
    headers = {"x-b3-traceid": trace_id, "x-b3-spanid": trace_id[16:], "x-b3-sampled": "1"}
    client = KeepAlive(box.gateway_port)
    try:
        status, _ = client.get("/productpage", headers)
    finally:
        client.close()
    if status != 200:
        raise BenchmarkError(f"the traced request answered {status}")
    deadline = time.monotonic() + 20
    count, stable_since = 0, time.monotonic()
    while time.monotonic() < deadline:
        url = f"/api/v2/trace/{trace_id}"
        with contextlib.closing(http.client.HTTPConnection(HOST, box.zipkin_port, timeout=5)) as c:
            c.request("GET", url)
            response = c.getresponse()
            body = response.read()
        now = len(json.loads(body)) if response.status == 200 else 0
        if now != count:
            count, stable_since = now, time.monotonic()
        elif count and time.monotonic() - stable_since > 2.5:  # two flush intervals, no news
            return count
        time.sleep(0.25)  # poll interval while the proxies flush their spans
    raise BenchmarkError(f"the traced request's spans did not settle (last count {count})")


def _span_templates() -> list[dict[str, Any]]:
    posts = json.loads(RECORDED_SPANS.read_text())
    return [span for post in posts for span in json.loads(post["body"])]


def _batch(templates: list[dict[str, Any]], spans_each: int, count: int) -> bytes:
    """`count` spans in traces of `spans_each`, each trace with a new id, as JSON."""
    spans = []
    for index in range(count):
        if index % spans_each == 0:
            trace_id = os.urandom(16).hex()
        span = dict(templates[index % len(templates)])
        span.update(traceId=trace_id, id=os.urandom(8).hex())
        span["timestamp"] = int(time.time() * 1_000_000)
        spans.append(span)
    return json.dumps(spans).encode()


def collector_ingest(work: Path, spans_each: int) -> dict[str, Any]:
    """Run the telemetry process alone and send it spans, paced, then as fast as possible."""
    state = work / "collector"
    (state / "telemetry").mkdir(parents=True)
    zipkin, metrics = free_port(), free_port()
    target_rate = GOAL_INGEST_REQUESTS_PER_S * spans_each
    capacity = int(target_rate * INGEST_SECONDS * 3)  # room for both phases: nothing evicted
    process = subprocess.Popen(
        [
            sys.executable, "-m", "istiolab.sandbox.telemetry", "--state-dir", str(state),
            "--zipkin-port", str(zipkin), "--metrics-port", str(metrics),
            "--max-spans", str(capacity),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_healthy(zipkin)
        templates = _span_templates()
        batches = [_batch(templates, spans_each, INGEST_BATCH) for _ in range(50)]
        paced = _send_spans(zipkin, batches, target_rate, INGEST_SECONDS, process.pid)
        flat_out = _send_spans(zipkin, batches, None, INGEST_SECONDS / 2, process.pid)
        health = _health(zipkin)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    sent = paced["spans_sent"] + flat_out["spans_sent"]
    return {
        "spans_per_request": spans_each,
        "batch": INGEST_BATCH,
        "target_spans_per_s": target_rate,
        "paced": paced,
        "as_fast_as_possible": flat_out,
        "collector": health,
        "lost": sent - int(health.get("received_spans", 0)),
        "dropped": int(health.get("evicted_spans", 0)) + int(health.get("rejected_messages", 0)),
    }


def _wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _health(port) is not None:
                return
        time.sleep(0.1)  # poll interval while the collector starts
    raise BenchmarkError("the telemetry process did not start")


def _health(port: int) -> dict[str, Any]:
    with contextlib.closing(http.client.HTTPConnection(HOST, port, timeout=5)) as connection:
        connection.request("GET", "/health")
        return json.loads(connection.getresponse().read())["zipkin"]


def _send_spans(
    port: int, batches: list[bytes], rate: float | None, seconds: float, pid: int
) -> dict[str, Any]:
    """POST batches from INGEST_SENDERS threads for `seconds`, at `rate` spans/s in total (or
    unpaced), chunked as Envoy sends them. Returns what was sent and the collector's CPU."""
    sent = [0] * INGEST_SENDERS
    errors: list[str] = []
    interval = INGEST_BATCH * INGEST_SENDERS / rate if rate else 0.0
    began = time.perf_counter()
    cpu_before = _cpu_seconds(pid)

    def sender(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        next_at = began + interval * index / INGEST_SENDERS
        try:
            while time.perf_counter() - began < seconds:
                if interval:
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += interval
                body = batches[(sent[index] // INGEST_BATCH) % len(batches)]
                connection.putrequest("POST", "/api/v2/spans")
                connection.putheader("Content-Type", "application/json")
                connection.putheader("Transfer-Encoding", "chunked")
                connection.endheaders()
                connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
                response = connection.getresponse()
                response.read()
                if response.status != 202:
                    errors.append(f"POST answered {response.status}")
                    return
                sent[index] += INGEST_BATCH
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(INGEST_SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise BenchmarkError(f"sending spans failed: {errors[0]}")
    cpu = _cpu_seconds(pid) - cpu_before
    return {
        "seconds": round(elapsed, 2),
        "spans_sent": sum(sent),
        "spans_per_s": round(sum(sent) / elapsed),
        "collector_cpu_share_of_one_core": round(cpu / elapsed, 3),
    }


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid) or []
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks if len(fields) > 12 else 0.0


# --------------------------------------------------------------------------------------------
# 4. Memory, and which processes belong to the sandbox
# --------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 on (state, ppid, pgrp, session, ...); None if gone/zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def _live_processes() -> dict[int, list[str]]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                found[int(entry.name)] = fields
    return found


def _mentions(pid: int, state_dir: Path) -> bool:
    """Whether a process names the state directory exactly in its command line or environment."""
    exact = str(state_dir).encode()
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    if any(arg == exact or arg.startswith(exact + b"/") for arg in argv):
        return True
    return b"ISTIOLAB_STATE_DIR=" + exact in environ


def mesh_processes(box: Sandbox) -> dict[str, Any]:
    """Every live process of the sandbox, each with its group (what it is).

    The tree: the control plane (controlplane.json's pid), every process in processes.json whose
    start time matches its record (so a reused pid is never counted), and all their descendants,
    plus everything in the sessions of recorded processes (each runs in a session of its own),
    which finds a gunicorn worker even if its master died. Cross-check: a /proc scan for any
    process naming the state directory exactly; one found only by the scan is counted too, and
    reported as `outside_tree`.
    """
    live = _live_processes()
    groups: dict[int, str] = {}
    daemon = box.daemon_pid()
    if daemon is not None and daemon in live:
        groups[daemon] = "control plane"
    sessions: dict[int, str] = {}
    mismatched = []
    for record in box.records():
        pid = record.get("pid")
        if not pid:
            continue
        if pid not in live or live[pid][19] != str(record.get("start_time")):
            mismatched.append(record["name"])
            continue
        group = _group_of(record["name"])
        groups[pid] = group
        sessions[int(live[pid][3])] = group
    children: dict[int, list[int]] = {}
    for pid, fields in live.items():
        children.setdefault(int(fields[1]), []).append(pid)
    pending = list(groups)
    while pending:
        parent = pending.pop()
        for child in children.get(parent, []):
            if child not in groups:
                groups[child] = groups[parent]
                pending.append(child)
    for pid, fields in live.items():
        if pid not in groups and int(fields[3]) in sessions:
            groups[pid] = sessions[int(fields[3])]
    outside = [
        pid
        for pid in live
        if pid not in groups and pid != os.getpid() and _mentions(pid, box.state_dir)
    ]
    for pid in outside:
        groups[pid] = "outside tree"
    return {"pids": groups, "not_running_as_recorded": mismatched, "outside_tree": outside}


def _group_of(record_name: str) -> str:
    if record_name == "kube-proxy":
        return "kube-proxy"
    if record_name == "istio-system.telemetry":
        return "telemetry"
    if record_name.startswith("istio-system."):
        return "ingress gateway"
    if record_name.endswith(".istio-proxy"):
        return "sidecars"
    return "apps"


def _kib(path: Path, field: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


GROUPS = (
    "control plane",
    "apps",
    "sidecars",
    "ingress gateway",
    "kube-proxy",
    "telemetry",
    "outside tree",
)


def memory(box: Sandbox) -> dict[str, Any]:
    """PSS and RSS of every process of the sandbox, per group and in total (MB)."""
    found = mesh_processes(box)
    per_group: dict[str, dict[str, Any]] = {}
    unreadable = []
    for pid, group in sorted(found["pids"].items()):
        pss = _kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
        rss = _kib(Path(f"/proc/{pid}/status"), "VmRSS")
        if pss is None or rss is None:
            unreadable.append(pid)  # exited between the scan and now
            continue
        entry = per_group.setdefault(group, {"processes": 0, "pss_kib": 0, "rss_kib": 0})
        entry["processes"] += 1
        entry["pss_kib"] += pss
        entry["rss_kib"] += rss
    groups = {
        name: {
            "processes": g["processes"],
            "pss_mb": round(g["pss_kib"] / 1024, 1),
            "rss_mb": round(g["rss_kib"] / 1024, 1),
        }
        for name, g in sorted(per_group.items(), key=lambda item: GROUPS.index(item[0]))
    }
    return {
        "groups": groups,
        "total": {
            "processes": sum(g["processes"] for g in groups.values()),
            "pss_mb": round(sum(g["pss_kib"] for g in per_group.values()) / 1024, 1),
            "rss_mb": round(sum(g["rss_kib"] for g in per_group.values()) / 1024, 1),
        },
        "not_running_as_recorded": found["not_running_as_recorded"],
        "outside_tree": found["outside_tree"],
        "unreadable": unreadable,
    }


# --------------------------------------------------------------------------------------------
# Stopping, and checking that nothing is left
# --------------------------------------------------------------------------------------------


def stop(box: Sandbox) -> str:
    """down(), then make sure no process of this sandbox is left; returns what happened."""
    # Interrupted while up() waited: the control plane is still starting and has not written
    # controlplane.json, so down() could not ask it to stop. Let it finish starting first.
    deadline = time.monotonic() + lifecycle.START_TIMEOUT
    while _starting(box) and time.monotonic() < deadline:
        time.sleep(0.2)  # up()'s own poll interval
    try:
        box.down()
        note = "stopped"
    except (IstiolabError, OSError) as exc:
        note = f"down failed ({exc})"
    deadline = time.monotonic() + STOP_GRACE_S
    while True:
        left = _left_over(box)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # poll interval while the last processes exit
    if left:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        note += f"; killed left-over processes {left}"
    return note


def _starting(box: Sandbox) -> bool:
    if not box.started or lifecycle.control_plane_port(box.state_dir) is not None:
        return False
    for pid in _live_processes():
        if pid != os.getpid() and _mentions(pid, box.state_dir):
            with contextlib.suppress(OSError):
                if b"istiolab.sandbox.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
    return False


def _left_over(box: Sandbox) -> list[int]:
    """Live processes of this sandbox: seen earlier (same pid and start time, so never a new
    process that got a recycled pid), or naming its state directory."""
    live = _live_processes()
    left = {pid for pid, start in box.known.items() if pid in live and live[pid][19] == start}
    left |= {pid for pid in live if pid != os.getpid() and _mentions(pid, box.state_dir)}
    return sorted(left)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    try:
        envoy = binary.envoy_version()
    except (IstiolabError, OSError, subprocess.SubprocessError):
        envoy = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "envoy": envoy,
        "git": commit,
    }


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    cold = result["cold_start"]
    apply = result["apply"]
    hop = result["latency"]["per_hop_ms"]["p50_ms"]
    mem = result["memory_after_load"]["total"]
    mtls = result["mtls"]
    ingest = result["collector_ingest"]
    worst_hop = max(hop["server_sidecar_minus_direct"], hop["two_sidecars_minus_direct_halved"])
    return [
        {
            "goal": f"cold up until productpage's first 200 < {GOAL_COLD_START_S:g} s "
            f"(max of {len(cold['runs'])}; stated for {GOAL_CPUS} cores)",
            "measured": f"median {cold['first_200_s']['median']:.2f} s, "
            f"max {cold['first_200_s']['max']:.2f} s",
            "met": cold["first_200_s"]["max"] < GOAL_COLD_START_S,
        },
        {
            "goal": f"apply until the gateway serves the new version: p95 < {GOAL_APPLY_P95_S:g} s",
            "measured": f"p50 {apply['seen_s']['p50']:.3f} s, p95 {apply['seen_s']['p95']:.3f} s "
            f"over {apply['applies']} applies",
            "met": apply["seen_s"]["p95"] < GOAL_APPLY_P95_S,
        },
        {
            "goal": f"latency added per sidecar hop at p50 < {GOAL_HOP_P50_MS:g} ms",
            "measured": f"server sidecar - direct {hop['server_sidecar_minus_direct']:.3f} ms; "
            f"(two sidecars - direct) / 2 {hop['two_sidecars_minus_direct_halved']:.3f} ms",
            "met": worst_hop < GOAL_HOP_P50_MS,
        },
        {
            "goal": f"latency mTLS adds per hop at p50 < {GOAL_MTLS_EXTRA_P50_MS:g} ms",
            "measured": f"mTLS {mtls['paths']['mtls']['p50_ms']:.3f} ms, plaintext "
            f"{mtls['paths']['plaintext']['p50_ms']:.3f} ms: "
            f"{mtls['extra_ms']['p50_ms']:.3f} ms extra",
            "met": mtls["extra_ms"]["p50_ms"] < GOAL_MTLS_EXTRA_P50_MS,
        },
        {
            "goal": f"the collector ingests the spans of {GOAL_INGEST_REQUESTS_PER_S} requests/s "
            "without drops",
            "measured": f"{ingest['paced']['spans_per_s']} spans/s asked "
            f"{ingest['target_spans_per_s']} ({ingest['spans_per_request']} per request), "
            f"{ingest['lost'] + ingest['dropped']} lost; up to "
            f"{ingest['as_fast_as_possible']['spans_per_s']} spans/s unpaced",
            "met": ingest["lost"] == 0
            and ingest["dropped"] == 0
            and ingest["paced"]["spans_per_s"] >= 0.95 * ingest["target_spans_per_s"],
        },
        {
            "goal": f"resident memory of the whole mesh (PSS) < {GOAL_MEMORY_MB:g} MB",
            "measured": f"{mem['pss_mb']:.1f} MB PSS ({mem['rss_mb']:.1f} MB RSS summed), "
            f"{mem['processes']} processes",
            "met": mem["pss_mb"] < GOAL_MEMORY_MB,
        },
    ]


def run_benchmark(repeat: int, applies: int, requests: int, out: Path) -> int:
    started = datetime.datetime.now(datetime.UTC)
    work = Path(tempfile.mkdtemp(prefix="istiolab-bench-"))
    boxes: list[Sandbox] = []
    shutdowns: list[str] = []
    result: dict[str, Any] = {
        "benchmark": "sandbox",
        "started": started.isoformat(timespec="seconds"),
        "settings": {
            "repeat": repeat,
            "applies": applies,
            "requests": requests,
            "poll_interval_s": POLL_INTERVAL_S,
        },
        "environment": environment(),
    }
    try:
        # 1. Cold starts. The last sandbox stays up for the rest.
        cold_runs, down_s = [], []
        for index in range(repeat):
            box = Sandbox(work / f"cold-{index}" / "state")
            boxes.append(box)
            print(f"cold start {index + 1} of {repeat} ...", flush=True)
            cold_runs.append(cold_start(box))
            if index < repeat - 1:
                began = time.perf_counter()
                shutdowns.append(stop(box))
                down_s.append(round(time.perf_counter() - began, 3))
        firsts = [r["first_200_s"] for r in cold_runs]
        result["cold_start"] = {
            "first_200_s": {
                "median": round(statistics.median(firsts), 3),
                "max": max(firsts),
                "min": min(firsts),
            },
            "up_returned_s_median": round(
                statistics.median(r["up_returned_s"] for r in cold_runs), 3
            ),
            "down_s": down_s,
            "runs": cold_runs,
        }

        # Sidecars for everyone, then the Gateway and the reviews subsets.
        box = boxes[-1]
        print("injecting sidecars and applying the gateway ...", flush=True)
        setup = {
            "label_s": round(
                box.run_cli("label", "namespace", "default", "istio-injection=enabled"), 3
            ),
            "rollout_restart_s": round(box.run_cli("rollout", "restart", "deployment"), 3),
        }
        base = work / "gateway-and-subsets.yaml"
        base.write_text(DESTINATION_RULE_AND_GATEWAY)
        setup["apply_gateway_s"] = round(box.run_cli("apply", "-f", str(base)), 3)
        workloads = box.api("/status")["workloads"]
        if not all(w["sidecar"] and w["ready"] == "2/2" for w in workloads):
            raise BenchmarkError(f"not every pod has a ready sidecar: {workloads}")
        result["setup"] = setup
        box.remember_pids()
        result["memory_idle"] = memory(box)

        # 2. Apply until seen.
        print(f"timing {applies} applies ...", flush=True)
        result["apply"] = apply_to_traffic(box, work, applies)

        # 3. Latency per hop, with reviews pinned to v1.
        print(f"timing {requests} requests per path ...", flush=True)
        box.run_cli("apply", "-f", str(work / "reviews-v1.yaml"))
        result["latency"] = hop_latency(box, requests)

        # 5. mTLS on versus off, on the same pod.
        print(f"timing {requests} requests with mTLS and without ...", flush=True)
        result["mtls"] = mtls_latency(box, work, requests)

        # 4. Memory after all that traffic.
        box.remember_pids()
        result["memory_after_load"] = memory(box)

        # 6. The collector, alone, fed what 500 requests/s would make it receive. The spans of
        # one request are counted with reviews v3, which calls ratings: the most spans a page
        # view makes.
        trace_all = work / "trace-all.yaml"
        trace_all.write_text(TRACE_ALL)
        box.run_cli("apply", "-f", str(trace_all), "-f", str(base))
        box.run_cli("apply", "-f", str(work / "reviews-v3.yaml"))
        print("counting the spans of one request, then feeding the collector ...", flush=True)
        result["collector_ingest"] = collector_ingest(work, spans_per_request(box))
    except (IstiolabError, BenchmarkError) as exc:
        for box in boxes[len(shutdowns) :]:  # the sandbox that was running
            print(f"control plane log of {box.state_dir}:\n{box.log_tail()}", file=sys.stderr)
        raise BenchmarkError(str(exc)) from None
    finally:
        for box in boxes[len(shutdowns) :]:
            shutdowns.append(stop(box))
        left = [pid for box in boxes for pid in _left_over(box)]
        shutil.rmtree(work, ignore_errors=True)
        result["shutdown"] = {"each": shutdowns, "left_running": left}
        print(f"sandboxes stopped; processes left running: {left or 'none'}", flush=True)

    result["environment"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["goals"] = goals(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result, out)
    return 0


def print_report(result: dict[str, Any], out: Path) -> None:
    env = result["environment"]
    load = (env["load_average_at_start"][0], env["load_average_at_end"][0])
    print(
        f"\nSandbox mesh, Envoy {env['envoy']}, {env['usable_cpus']} usable CPUs, "
        f"git {env['git']}, load average {load[0]:.1f} at the start and {load[1]:.1f} at the end"
    )
    if max(load) > env["usable_cpus"]:
        print("  (the machine was busy with other work: expect slower figures than on an idle one)")

    cold = result["cold_start"]
    print(f"\n1. Cold up until productpage's first 200 (port-forward), {len(cold['runs'])} runs, s")
    print(
        f"{'run':>5}{'1st spawn':>11}{'last spawn':>11}{'cp ready':>10}{'up()':>8}{'1st 200':>9}"
        f"{'restarted':>11}"
    )
    for index, run in enumerate(cold["runs"], 1):
        print(
            f"{index:>5}{_fmt(run['first_process_spawned_s'], '.2f'):>11}"
            f"{_fmt(run['last_process_spawned_s'], '.2f'):>11}"
            f"{_fmt(run['control_plane_ready_s'], '.2f'):>10}{run['up_returned_s']:>8.2f}"
            f"{run['first_200_s']:>9.2f}{len(run['restarted']):>11}"
        )
        for name, what in run["restarted"].items():
            print(f"{'':>7}{name}: {what}")
    first = cold["first_200_s"]
    print(f"  first 200: median {first['median']:.2f} s, max {first['max']:.2f} s")

    apply = result["apply"]
    print(
        f"\n2. apply until the gateway serves the new reviews version, {apply['applies']} applies"
    )
    print(f"{'':<34}{'p50 s':>8}{'p95 s':>8}{'max s':>8}")
    for label, key in (
        ("start -> new version seen", "seen_s"),
        ("istiolab apply (the command)", "apply_command_s"),
        ("istiolab status (CLI reference)", "cli_status_s"),
        ("the same apply via the API only", "api_apply_s"),
    ):
        s = apply[key]
        print(
            f"{label:<34}{_fmt(s['p50'], '.3f'):>8}{_fmt(s['p95'], '.3f'):>8}"
            f"{_fmt(s['max'], '.3f'):>8}"
        )
    print(
        f"  apply command / seen at p50: {_fmt(apply['command_share_of_seen_p50'], '.2f')}; "
        f"the command minus the API at p50 (the CLI's own time): "
        f"{_fmt(apply['cli_overhead_s_p50'], '.3f')} s;\n  "
        f"seen before the command returned: {apply['seen_before_command_returned']} of "
        f"{apply['applies']}; stale page after it returned: {apply['stale_page_after_return']}; "
        f"old version after the new: {apply['old_version_after_new']}"
    )

    lat = result["latency"]
    print(
        f"\n3. GET /reviews/0 on {lat['reviews_pod']}, {lat['requests_per_path']} sequential "
        "keep-alive requests per path"
    )
    print(f"{'path':<30}{'p50 ms':>8}{'p99 ms':>8}{'p50 x':>8}{'p99 x':>8}")
    for name, figures in lat["paths"].items():
        ratio = lat["ratios_to_direct"][name]
        print(
            f"{name.replace('_', ' '):<30}{figures['p50_ms']:>8.3f}{figures['p99_ms']:>8.3f}"
            f"{_fmt(ratio['p50'], '.2f'):>8}{_fmt(ratio['p99'], '.2f'):>8}"
        )
    for stat in ("p50_ms", "p99_ms"):
        hop = lat["per_hop_ms"][stat]
        print(
            f"  per hop at {stat[:3]}: server sidecar - direct "
            f"{hop['server_sidecar_minus_direct']:.3f} ms; (two sidecars - direct) / 2 "
            f"{hop['two_sidecars_minus_direct_halved']:.3f} ms"
        )

    print("\n4. Memory of the sandbox's processes (MB)")
    print(f"{'group':<18}{'procs':>6}{'PSS idle':>10}{'PSS load':>10}{'RSS load':>10}")
    idle, loaded = result["memory_idle"], result["memory_after_load"]
    for name in [*loaded["groups"], "total"]:
        now = loaded["total"] if name == "total" else loaded["groups"][name]
        before = idle["total"] if name == "total" else idle["groups"].get(name, {})
        print(
            f"{name:<18}{now['processes']:>6}{_fmt(before.get('pss_mb')):>10}"
            f"{now['pss_mb']:>10.1f}{now['rss_mb']:>10.1f}"
        )
    if loaded["outside_tree"] or loaded["not_running_as_recorded"]:
        print(
            f"  outside the process tree: {loaded['outside_tree']}; not running as recorded: "
            f"{loaded['not_running_as_recorded']}"
        )

    mtls = result["mtls"]
    print(
        f"\n5. The same two hops with mTLS and without, {mtls['requests_per_path']} requests each"
    )
    print(f"{'path':<30}{'p50 ms':>8}{'p99 ms':>8}")
    for name, figures in mtls["paths"].items():
        print(f"{name:<30}{figures['p50_ms']:>8.3f}{figures['p99_ms']:>8.3f}")
    print(
        f"  mTLS adds {mtls['extra_ms']['p50_ms']:.3f} ms at p50, {mtls['extra_ms']['p99_ms']:.3f}"
        f" ms at p99 (x{_fmt(mtls['ratio_p50'], '.2f')} at p50); TLS handshakes by subset: "
        f"{mtls['tls_handshakes_by_subset']}"
    )

    ingest = result["collector_ingest"]
    print(
        f"\n6. The trace collector: {ingest['spans_per_request']} spans per Bookinfo request, "
        f"batches of {ingest['batch']}"
    )
    print(f"{'phase':<24}{'spans/s':>10}{'spans':>10}{'CPU':>8}")
    for label, key in (
        ("paced at the goal", "paced"),
        ("as fast as possible", "as_fast_as_possible"),
    ):
        phase = ingest[key]
        print(
            f"{label:<24}{phase['spans_per_s']:>10}{phase['spans_sent']:>10}"
            f"{phase['collector_cpu_share_of_one_core']:>8.0%}"
        )
    print(f"  lost {ingest['lost']}, dropped {ingest['dropped']} (evicted or rejected)")

    print("\nGoals")
    for goal in result["goals"]:
        print(f"  [{'met' if goal['met'] else 'NOT MET'}] {goal['goal']}")
        print(f"        measured: {goal['measured']}")
    if env["usable_cpus"] != GOAL_CPUS:
        print(f"  (goals are stated for {GOAL_CPUS} cores; this run had {env['usable_cpus']})")
    print(f"\nResults: {out}")


def _at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is less than {minimum}")
        return value

    return parse


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the sandboxes are stopped as after a Ctrl-C


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=_at_least(1), default=3, help="cold starts (default 3)")
    parser.add_argument(
        "--applies", type=_at_least(2), default=20, help="timed applies (default 20)"
    )
    parser.add_argument(
        "--requests",
        type=_at_least(10),
        default=2000,
        help="measured requests per path for the hop latency (default 2000)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the JSON (default benchmarks/results/sandbox-<timestamp>.json)",
    )
    args = parser.parse_args(argv)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_DIR / f"sandbox-{stamp}.json"
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return run_benchmark(args.repeat, args.applies, args.requests, out)
    except BenchmarkError as exc:
        print(f"sandbox_bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sandbox_bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
