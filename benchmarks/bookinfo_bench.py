"""Benchmark Bookinfo without a mesh: GET /productpage against productpage's own GET /health.

    .venv/bin/python benchmarks/bookinfo_bench.py [--duration S] [--warmup S] [--out FILE]

Starts `python -m bookinfo serve-all --reviews v3` (the same gunicorn settings as the images) on a
free block of four ports, then loads /health and /productpage at concurrency 1, 8 and 32, one
after the other, for --duration seconds each after --warmup seconds. Every load run is a separate
client process (Python threads, one keep-alive `http.client` connection per thread), so the
client's GIL never competes with a server's. After the load it reads the resident memory of every
gunicorn master and worker from /proc, writes JSON to --out (default
benchmarks/results/bookinfo-<timestamp>.json) and prints a table.

/health answers from productpage's process without calling anything, so the productpage/health
ratios say what the downstream calls and the page rendering cost on this machine, whatever the
machine. See benchmarks/README.md for how to read the output.

This is a benchmark, not a test: it measures and reports, and exits 0 whether or not the goals
are met (1 if Bookinfo could not be started or measured).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import importlib.metadata
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"

HOST = "127.0.0.1"
REVIEWS_VERSION = "v3"  # productpage -> details, reviews -> ratings: every service is on the path
SERVICES = ("productpage", "details", "reviews", "ratings")
CONCURRENCY = (1, 8, 32)
PATHS = ("/health", "/productpage")

# A page that came back 200 but shows "Error fetching ..." or a ratings error (the template marks
# both with this class) did not exercise the whole call chain: it is counted as degraded.
DEGRADED_MARKER = b'class="error"'

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0  # serve-all gives its services 10 s to finish in-flight requests
REQUEST_TIMEOUT_SECONDS = 15.0  # productpage may take 3 s + 2 x 3 s on a failing backend

GOAL_CONCURRENCY = 8
GOAL_MIN_RPS = 200.0
GOAL_MAX_P99_MS = 100.0
GOAL_MAX_RSS_MB = 60.0
GOAL_CPUS = 2


# --------------------------------------------------------------------------------------------
# The load client: runs in its own process (`--client SPEC`), prints one JSON object.
# --------------------------------------------------------------------------------------------


class _ClientThread:
    """One simulated user: one keep-alive connection, requests back to back."""

    def __init__(self, host: str, port: int, path: str, t_start: float, t_end: float) -> None:
        self.host, self.port, self.path = host, port, path
        self.t_start, self.t_end = t_start, t_end
        self.conn: http.client.HTTPConnection | None = None
        self.conn_used = False
        self.connects = 0
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.degraded = 0

    def run(self) -> None:
        try:
            while True:
                began = time.perf_counter()
                if began >= self.t_end:
                    return
                outcome = self._fetch()
                done = time.perf_counter()
                # Count what completes inside the window; warm-up and stragglers are not counted.
                if self.t_start <= done < self.t_end:
                    self.latencies.append(done - began)
                    if outcome == "degraded":
                        self.degraded += 1
                    elif outcome != "ok":
                        self.errors[outcome] += 1
        finally:
            self._close()

    def _fetch(self) -> str:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=REQUEST_TIMEOUT_SECONDS
                )
                self.conn_used = False
                self.connects += 1
            try:
                self.conn.request("GET", self.path)
                response = self.conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # The server closed an idle keep-alive connection just as we reused it: retry once
                # on a new connection, as browsers do. On a fresh connection this is an error.
                reused = self.conn_used
                self._close()
                if reused and attempt == 0:
                    continue
                return type(exc).__name__
            except (OSError, http.client.HTTPException) as exc:
                self._close()
                return type(exc).__name__
            if response.will_close:
                self._close()
            else:
                self.conn_used = True
            if response.status != 200:
                return f"HTTP {response.status}"
            if self.path == "/productpage" and DEGRADED_MARKER in body:
                return "degraded"
            return "ok"
        return "retry failed"  # not reached: the second attempt always returns

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time of these processes so far, from /proc/PID/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None  # the process went away: no meaningful number
        fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def _percentile(ordered: list[float], percent: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    concurrency = int(spec["concurrency"])
    duration = float(spec["duration"])
    watched: dict[str, list[int]] = spec.get("watch", {})
    base = time.perf_counter() + 0.05  # let every thread exist before the clock starts
    t_start = base + float(spec["warmup"])
    t_end = t_start + duration
    clients = [
        _ClientThread(spec["host"], int(spec["port"]), spec["path"], t_start, t_end)
        for _ in range(concurrency)
    ]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()

    time.sleep(max(0.0, t_start - time.perf_counter()))
    cpu_before = {name: _cpu_seconds(pids) for name, pids in watched.items()}
    client_before = time.process_time()
    time.sleep(max(0.0, t_end - time.perf_counter()))
    cpu_after = {name: _cpu_seconds(pids) for name, pids in watched.items()}
    client_after = time.process_time()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT_SECONDS + 5)

    cpu: dict[str, float | None] = {}
    for name in watched:
        before, after = cpu_before[name], cpu_after[name]
        cpu[name] = None if before is None or after is None else round(after - before, 3)
    cpu["client"] = round(client_after - client_before, 3)

    latencies = sorted(x for c in clients for x in c.latencies)
    errors: Counter[str] = Counter()
    for c in clients:
        errors.update(c.errors)
    return {
        "path": spec["path"],
        "concurrency": concurrency,
        "duration_s": duration,
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / duration, 2),
        "latency_ms": {
            "p50": _ms(_percentile(latencies, 50)),
            "p99": _ms(_percentile(latencies, 99)),
            "mean": _ms(sum(latencies) / len(latencies)) if latencies else None,
            "max": _ms(latencies[-1]) if latencies else None,
        },
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "degraded": sum(c.degraded for c in clients),
        "connections_opened": sum(c.connects for c in clients),
        "cpu_seconds": cpu,
    }


# --------------------------------------------------------------------------------------------
# The benchmark: start Bookinfo, drive the client, read memory, report.
# --------------------------------------------------------------------------------------------


class BenchmarkError(RuntimeError):
    """Bookinfo could not be started or measured."""


def find_free_ports(count: int = 4) -> int:
    """A base port such that base .. base+count-1 are free on HOST, below the ephemeral range.

    Outside the ephemeral range because productpage and reviews open a new outgoing connection
    per call, thousands per second, and those take ephemeral ports.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = max(low - count, 12000)
    for _ in range(100):
        base = random.randrange(10000, top)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise BenchmarkError("found no block of 4 free ports")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def start_bookinfo(base_port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bookinfo",
            "serve-all",
            "--reviews",
            REVIEWS_VERSION,
            "--port",
            str(base_port),
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own session: a Ctrl-C on the benchmark reaches only us, and we stop it in order.
        start_new_session=True,
    )


def wait_ready(process: subprocess.Popen[bytes], base_port: int, log: IO[bytes]) -> float:
    """Poll /productpage until it serves a complete page; return the seconds it took."""
    url = f"http://{HOST}:{base_port}/productpage"
    began = time.monotonic()
    deadline = began + READY_TIMEOUT_SECONDS
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(
                f"serve-all exited with status {process.returncode} while starting:\n"
                + log_tail(log)
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read()
                if response.status == 200 and DEGRADED_MARKER not in body:
                    return time.monotonic() - began
                last = f"status {response.status}, page shows an error"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchmarkError(
        f"{url} did not serve a complete page within {READY_TIMEOUT_SECONDS:.0f} s "
        f"(last: {last}):\n" + log_tail(log)
    )


def log_tail(log: IO[bytes], lines: int = 20) -> str:
    log.flush()
    log.seek(0)
    tail = log.read().decode(errors="replace").splitlines()[-lines:]
    return "\n".join(f"  {line}" for line in tail)


def _parent_pids() -> dict[int, int]:
    """pid -> parent pid for every process we can see."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def service_pids(serve_all_pid: int) -> dict[str, list[int]]:
    """The gunicorn master (a child of serve-all) and its workers, per service."""
    parents = _parent_pids()
    found: dict[str, list[int]] = {}
    for pid, parent in parents.items():
        if parent != serve_all_pid:
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # [python, -m, bookinfo, serve, SERVICE, --version, ...]
        if b"serve" not in argv or argv.index(b"serve") + 1 >= len(argv):
            continue
        name = argv[argv.index(b"serve") + 1].decode()
        workers = sorted(p for p, pp in parents.items() if pp == pid)
        found[name] = [pid, *workers]
    missing = [s for s in SERVICES if s not in found or len(found[s]) < 2]
    if missing:
        raise BenchmarkError(f"found no gunicorn master and worker for: {', '.join(missing)}")
    return {name: found[name] for name in SERVICES}


def _kib(path: Path, field: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def memory(pids: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    """Resident memory per service: RSS summed over master and workers, and PSS for comparison.

    RSS counts the pages a worker shares with its master (it is forked from it) twice; PSS splits
    shared pages between the processes that share them, so the PSS sum is what the service really
    occupies, and close to what a container's memory cgroup charges (it counts a shared page
    once). The goal is checked against the PSS sum; the RSS sum is reported beside it.
    """
    result = {}
    for name, service in pids.items():
        rss = [_kib(Path(f"/proc/{pid}/status"), "VmRSS") for pid in service]
        pss = [_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss") for pid in service]
        result[name] = {
            "pids": service,
            "rss_mb": round(sum(rss) / 1024, 1) if None not in rss else None,
            "rss_mb_each": [None if r is None else round(r / 1024, 1) for r in rss],
            "pss_mb": round(sum(pss) / 1024, 1) if None not in pss else None,
        }
    return result


def measure(
    port: int, path: str, concurrency: int, duration: float, warmup: float, watch: dict
) -> dict[str, Any]:
    spec = {
        "host": HOST,
        "port": port,
        "path": path,
        "concurrency": concurrency,
        "duration": duration,
        "warmup": warmup,
        "watch": watch,
    }
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--client", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=warmup + duration + REQUEST_TIMEOUT_SECONDS + 30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"the load client for {path} at {concurrency} hung") from None
    if done.returncode != 0:
        raise BenchmarkError(
            f"the load client for {path} at {concurrency} failed:\n{done.stderr.strip()}"
        )
    return json.loads(done.stdout)


def stop_bookinfo(process: subprocess.Popen[bytes], pids: dict[str, list[int]]) -> str:
    """SIGINT serve-all (it stops its services in order), confirm it and they are gone."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            for pid in (p for service in pids.values() for p in service):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait()
            return f"serve-all did not stop within {STOP_TIMEOUT_SECONDS:.0f} s; killed it"
    left = [p for service in pids.values() for p in service if _alive(p)]
    if left:
        return f"serve-all exited ({process.returncode}) but these PIDs remain: {left}"
    return f"serve-all and its services stopped (exit status {process.returncode})"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {(r["path"], r["concurrency"]): r for r in runs}
    result = []
    for c in CONCURRENCY:
        page, health = by_key[("/productpage", c)], by_key[("/health", c)]
        result.append(
            {
                "concurrency": c,
                "throughput": _ratio(page["throughput_rps"], health["throughput_rps"]),
                "p50": _ratio(page["latency_ms"]["p50"], health["latency_ms"]["p50"]),
                "p99": _ratio(page["latency_ms"]["p99"], health["latency_ms"]["p99"]),
            }
        )
    return result


def goals(runs: list[dict[str, Any]], mem: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    page = next(
        r for r in runs if r["path"] == "/productpage" and r["concurrency"] == GOAL_CONCURRENCY
    )
    p99 = page["latency_ms"]["p99"]
    throughput_met = (
        page["throughput_rps"] >= GOAL_MIN_RPS
        and p99 is not None
        and p99 < GOAL_MAX_P99_MS
        and page["errors"] == 0
        and page["degraded"] == 0
    )
    worst = max(mem.items(), key=lambda item: item[1]["pss_mb"] or math.inf)
    memory_met = all(
        m["pss_mb"] is not None and m["pss_mb"] < GOAL_MAX_RSS_MB for m in mem.values()
    )
    return [
        {
            "goal": f"/productpage at concurrency {GOAL_CONCURRENCY}: >= {GOAL_MIN_RPS:.0f} req/s "
            f"with p99 < {GOAL_MAX_P99_MS:.0f} ms, no errors (stated for {GOAL_CPUS} cores)",
            "measured": f"{page['throughput_rps']:.1f} req/s, p99 {_fmt(p99)} ms, "
            f"{page['errors']} errors, {page['degraded']} degraded",
            "met": throughput_met,
        },
        {
            "goal": f"< {GOAL_MAX_RSS_MB:.0f} MB resident per service (master + worker, PSS)",
            "measured": f"largest: {worst[0]} {_fmt(worst[1]['pss_mb'])} MB PSS "
            f"({_fmt(worst[1]['rss_mb'])} MB RSS summed)",
            "met": memory_met,
        },
    ]


def environment() -> dict[str, Any]:
    versions = {}
    for package in ("flask", "gunicorn", "jinja2", "werkzeug"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
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
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "packages": versions,
        "git": commit,
    }


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(result: dict[str, Any], out: Path) -> None:
    settings, env = result["settings"], result["environment"]
    print(
        f"\nBookinfo without a mesh (reviews {settings['reviews']}), {settings['duration_s']:g} s "
        f"per run after {settings['warmup_s']:g} s warm-up, keep-alive client, "
        f"{env['usable_cpus']} usable CPUs"
    )
    print(f"\n{'path':<13}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for run in result["runs"]:
        errors = str(run["errors"]) + (f" +{run['degraded']}d" if run["degraded"] else "")
        print(
            f"{run['path']:<13}{run['concurrency']:>5}{run['throughput_rps']:>10.1f}"
            f"{_fmt(run['latency_ms']['p50'], '.2f'):>9}{_fmt(run['latency_ms']['p99'], '.2f'):>9}"
            f"{errors:>8}"
        )

    print(f"\n{'productpage / health':<21}{'conc':>5}{'req/s':>9}{'p50':>9}{'p99':>9}")
    for ratio in result["ratios"]:
        print(
            f"{'':<21}{ratio['concurrency']:>5}{_fmt(ratio['throughput'], '.3f'):>9}"
            f"{_fmt(ratio['p50'], '.1f'):>8}x{_fmt(ratio['p99'], '.1f'):>8}x"
        )

    names = [*SERVICES, "serve-all", "client"]
    print("\nCPU ms per /productpage request, and how busy the machine was")
    print(f"{'conc':>4}" + "".join(f"{n:>12}" for n in names) + f"{'total':>8}{'busy':>7}")
    for run in (r for r in result["runs"] if r["path"] == "/productpage"):
        cpu, count = run["cpu_seconds"], max(run["requests"], 1)
        known = [cpu.get(n) for n in names]
        total = sum(x for x in known if x is not None)
        busy = total / (run["duration_s"] * env["usable_cpus"]) * 100
        print(
            f"{run['concurrency']:>4}"
            + "".join(f"{_fmt(None if x is None else x * 1000 / count, '.2f'):>12}" for x in known)
            + f"{total * 1000 / count:>8.2f}{busy:>6.0f}%"
        )

    print("\nMemory per service (MB, master + worker)")
    print(f"{'service':<13}{'RSS idle':>10}{'RSS load':>10}{'PSS load':>10}")
    for name in SERVICES:
        idle, loaded = result["memory_idle"][name], result["memory_after_load"][name]
        print(
            f"{name:<13}{_fmt(idle['rss_mb']):>10}{_fmt(loaded['rss_mb']):>10}"
            f"{_fmt(loaded['pss_mb']):>10}"
        )

    print("\nGoals")
    for goal in result["goals"]:
        print(f"  [{'met' if goal['met'] else 'NOT MET'}] {goal['goal']}")
        print(f"        measured: {goal['measured']}")
    if env["usable_cpus"] != GOAL_CPUS:
        print(
            f"  (the throughput goal is stated for {GOAL_CPUS} cores; this run had "
            f"{env['usable_cpus']})"
        )
    print(f"\nResults: {out}")


def run_benchmark(duration: float, warmup: float, out: Path) -> int:
    started = datetime.datetime.now(datetime.UTC)
    base_port = find_free_ports()
    with tempfile.TemporaryFile() as log:  # serve-all's output, shown if something goes wrong
        process = start_bookinfo(base_port, log)
        pids: dict[str, list[int]] = {}
        try:
            ready_s = wait_ready(process, base_port, log)
            pids = service_pids(process.pid)
            idle = memory(pids)
            watch = {**pids, "serve-all": [process.pid]}
            runs = []
            for concurrency in CONCURRENCY:
                for path in PATHS:
                    print(f"measuring {path} at concurrency {concurrency} ...", flush=True)
                    runs.append(measure(base_port, path, concurrency, duration, warmup, watch))
                    if process.poll() is not None:
                        raise BenchmarkError("serve-all exited during the load:\n" + log_tail(log))
            pids = service_pids(process.pid)  # a worker may have been restarted
            loaded = memory(pids)
        finally:
            shutdown = stop_bookinfo(process, pids)
            print(shutdown, flush=True)

    result = {
        "benchmark": "bookinfo",
        "started": started.isoformat(timespec="seconds"),
        "settings": {
            "command": f"python -m bookinfo serve-all --reviews {REVIEWS_VERSION} "
            f"--port {base_port}",
            "reviews": REVIEWS_VERSION,
            "ports": {name: base_port + i for i, name in enumerate(SERVICES)},
            "duration_s": duration,
            "warmup_s": warmup,
            "concurrency": list(CONCURRENCY),
            "client": "python http.client, one thread and one keep-alive connection per user",
            "ready_after_s": round(ready_s, 2),
        },
        "environment": environment(),
        "runs": runs,
        "ratios": ratios(runs),
        "memory_idle": idle,
        "memory_after_load": loaded,
        "shutdown": shutdown,
    }
    result["goals"] = goals(runs, loaded)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result, out)
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=_positive, default=10.0, help="seconds measured per run (default 10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds before each run (default 2)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the JSON (default benchmarks/results/bookinfo-<timestamp>.json)",
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: be the load client
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(run_client(json.loads(args.client))))
        return 0
    if args.warmup < 0:
        parser.error("--warmup cannot be negative")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_DIR / f"bookinfo-{stamp}.json"
    try:
        return run_benchmark(args.duration, args.warmup, out)
    except BenchmarkError as exc:
        print(f"bookinfo_bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bookinfo_bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
