"""The command line and the scripts, run the way a learner runs them: as real processes.

`python -m bookinfo serve` and `serve-all`, `./scripts/quickstart.sh`, the shell library behind
quickstart.sh and test.sh, and the `istiolab` command. Every process a test starts is stopped by
its PID when the test ends, whatever happened; services listen on free loopback ports.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
import requests

from istiolab.sandbox import lifecycle
from live import HOST, Reply, Upstream

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BASH = shutil.which("bash") or "/bin/bash"

DETAILS_0 = (
    '{"id":0,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,'
    '"publisher":"PublisherA","language":"English","ISBN-10":"1234567890",'
    '"ISBN-13":"123-1234567890"}'
)
STARTUP_SECONDS = 30.0  # generous: four services booting at once on a loaded two-core machine
STOP_SECONDS = 10.0
FAIL_FAST_SECONDS = 10.0

# Variables the services read; the tests set the ones they mean, and nothing leaks in from outside.
SERVICE_VARIABLES = {"SERVICES_DOMAIN", "HOSTNAME", "CLUSTER_NAME", "SERVICE_VERSION"}
SERVICE_VARIABLES |= {f"{name}_HOSTNAME" for name in ("DETAILS", "REVIEWS", "RATINGS")}
SERVICE_VARIABLES |= {f"{name}_SERVICE_PORT" for name in ("DETAILS", "REVIEWS", "RATINGS")}
SERVICE_VARIABLES |= {"SECRET_KEY", "FLOOD_FACTOR", "ENABLE_RATINGS", "STAR_COLOR"}
SERVICE_VARIABLES |= {"ENABLE_EXTERNAL_BOOK_SERVICE", "DO_NOT_ENCRYPT", "EXTERNAL_BOOK_HOST"}
SERVICE_VARIABLES |= {"EXTERNAL_BOOK_PORT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SERVICE_VARIABLES}
    env.update(variables)
    return env


# --- Ports --------------------------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1) -> int:
    """The first of `count` consecutive free loopback ports.

    Chosen below Linux's ephemeral range (32768 and up), so that the kernel does not hand one of
    them to some other test's outgoing connection meanwhile.
    """
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 32000 - count)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def processes_serving(port: int) -> list[int]:
    """PIDs of live processes whose command line has `--port PORT` (a bookinfo service's)."""
    wanted = str(port).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if any(a == b"--port" and b == wanted for a, b in itertools.pairwise(args)):
            found.append(int(entry.name))
    return found


# --- Processes ----------------------------------------------------------------------------------


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        return f"exit code {self.process.poll()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum` and wait for the exit code."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_SECONDS:.0f} s after signal {signum}")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start a long-running command; output goes to files (a pipe nobody reads would fill up).

    Teardown kills what is still running, by PID: the command itself, and any service process
    left serving one of the ports in `watch` (found in /proc).
    """
    started: list[Running] = []
    ports: list[int] = []

    def start(
        args: Sequence[str], env: dict[str, str], cwd: Path = ROOT, watch: Sequence[int] = ()
    ) -> Running:
        number = len(started)
        out, err = tmp_path / f"stdout-{number}.txt", tmp_path / f"stderr-{number}.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                list(args), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, cwd=cwd
            )
        running = Running(process, out, err)
        started.append(running)
        ports.extend(watch)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
    for port in ports:
        for pid in processes_serving(port):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def run(args: Sequence[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """A command that is expected to finish on its own, and quickly."""
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=FAIL_FAST_SECONDS,
        check=False,
    )


def bookinfo(*args: str) -> list[str]:
    return [PYTHON, "-m", "bookinfo", *args]


def wait_for(url: str, running: Running, seconds: float = STARTUP_SECONDS) -> requests.Response:
    """Poll `url` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(f"stopped before {url} answered:\n{running.describe()}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except requests.ConnectionError:
            pass
        time.sleep(0.05)  # poll interval
    pytest.fail(f"{url} did not answer 200 within {seconds:.0f} s:\n{running.describe()}")


def wait_for_output(running: Running, text: str, seconds: float = STARTUP_SECONDS) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in (stdout := running.stdout):
            return stdout
        if running.process.poll() is not None:
            break
        time.sleep(0.05)  # poll interval
    pytest.fail(f"{text!r} never appeared in the output:\n{running.describe()}")


def catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler installed for `signum` (SigCgt in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


SUMMARY_END = "Press Ctrl-C to stop."


def wait_until_serving(running: Running) -> str:
    """Wait for serve-all's summary (printed once all four answer), and for it to handle SIGTERM.

    The page alone is no sign: productpage answers 200 while the others are still booting.
    """
    stdout = wait_for_output(running, SUMMARY_END)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not catches(running.pid, signal.SIGTERM):
        if time.monotonic() > deadline:
            pytest.fail(f"never started handling SIGTERM:\n{running.describe()}")
        time.sleep(0.01)  # poll interval: the handler goes in right after the summary
    return stdout


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert 'File "' not in text, text


# --- serve: one service -------------------------------------------------------------------------


def test_serve_details_answers_and_stops_on_sigterm(spawn: Callable[..., Running]) -> None:
    port = free_ports()
    details = spawn(bookinfo("serve", "details", "--port", str(port)), environment(), watch=[port])
    wait_for(f"http://{HOST}:{port}/health", details)

    response = requests.get(f"http://{HOST}:{port}/details/0", timeout=5)
    assert response.status_code == 200
    assert response.text == DETAILS_0
    assert response.headers["Content-Type"] == "application/json"

    started = time.monotonic()
    assert details.stop(signal.SIGTERM) == 0, details.describe()
    assert time.monotonic() - started < STOP_SECONDS
    assert not accepts_connections(port)
    assert_no_traceback(details.stderr)


@pytest.fixture
def ratings_stand_in(upstream: Callable[..., Upstream]) -> Upstream:
    return upstream(reply=Reply(body='{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}'))


@pytest.mark.parametrize(
    ("variables", "color"),
    [({}, "red"), ({"STAR_COLOR": "green"}, "green")],
    ids=["version-default", "explicit-env-wins"],
)
def test_serve_reviews_version_sets_the_image_environment(
    spawn: Callable[..., Running],
    ratings_stand_in: Upstream,
    variables: dict[str, str],
    color: str,
) -> None:
    port = free_ports()
    env = environment(
        RATINGS_HOSTNAME=HOST, RATINGS_SERVICE_PORT=str(ratings_stand_in.port), **variables
    )
    reviews = spawn(
        bookinfo("serve", "reviews", "--version", "v3", "--port", str(port)), env, watch=[port]
    )
    wait_for(f"http://{HOST}:{port}/health", reviews)

    response = requests.get(f"http://{HOST}:{port}/reviews/0", timeout=5)
    assert response.status_code == 200
    ratings = [review["rating"] for review in response.json()["reviews"]]
    assert ratings == [{"stars": 5, "color": color}, {"stars": 4, "color": color}]
    assert [r.path for r in ratings_stand_in.requests] == ["/ratings/0"]
    assert reviews.stop(signal.SIGTERM) == 0, reviews.describe()


# --- serve: refusing to start -------------------------------------------------------------------


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 1 and a `bookinfo: error:` message with `words`, no traceback; the first line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert_no_traceback(result.stderr)
    first = result.stderr.splitlines()[0]
    assert first.startswith("bookinfo: error: "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return first


def test_serve_on_a_taken_port_says_which_and_what_to_do() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run(bookinfo("serve", "details", "--port", str(port)), environment())
    assert time.monotonic() - started < FAIL_FAST_SECONDS
    assert_refused(result, str(port), "--port")
    assert "already in use" in result.stderr


def test_serve_ratings_v2_is_refused() -> None:
    result = run(
        bookinfo("serve", "ratings", "--port", str(free_ports())),
        environment(SERVICE_VERSION="v2"),
    )
    line = assert_refused(result, "SERVICE_VERSION=v2", "database-backed")
    assert "not include" in line
    assert result.stderr.strip() == line  # one line, nothing else


def test_serve_with_a_bad_flood_factor_names_the_variable() -> None:
    result = run(
        bookinfo("serve", "productpage", "--port", str(free_ports())),
        environment(FLOOD_FACTOR="abc"),
    )
    assert_refused(result, "FLOOD_FACTOR", "'abc'")


def test_serve_an_unknown_version_lists_the_valid_ones() -> None:
    result = run(bookinfo("serve", "reviews", "--version", "v9"), environment())
    line = assert_refused(result, "v9")
    for valid in ("v1", "v2", "v3"):
        assert valid in line


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_serve_a_bad_port_is_a_usage_error(port: str) -> None:
    result = run(bookinfo("serve", "details", "--port", port), environment())
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m bookinfo serve")
    assert "argument --port" in result.stderr
    assert port in result.stderr
    assert_no_traceback(result.stderr)


# --- serve-all ----------------------------------------------------------------------------------

SERVICE_PATHS = {"productpage": "/productpage", "details": "/details/0"}
SERVICE_PATHS |= {"reviews": "/reviews/0", "ratings": "/ratings/0"}


def summary_urls(base: int) -> list[str]:
    return [
        f"http://{HOST}:{base + offset}{path}" for offset, path in enumerate(SERVICE_PATHS.values())
    ]


def assert_all_stopped(base: int) -> None:
    for port in range(base, base + 4):
        assert not accepts_connections(port), f"port {port} still accepts connections"
        assert processes_serving(port) == [], f"a service with --port {port} is still running"


@pytest.mark.parametrize("proxy", [False, True], ids=["no-proxy", "learner-proxy"])
def test_serve_all_runs_the_four_services_and_ctrl_c_stops_them(
    spawn: Callable[..., Running], proxy: bool
) -> None:
    base = free_ports(4)
    # A proxy set in the learner's shell (here one that refuses every connection) must not sit
    # between the services, which all talk on loopback.
    proxies = {"HTTP_PROXY": f"http://{HOST}:{free_ports()}"} if proxy else {}
    bookinfo_all = spawn(
        bookinfo("serve-all", "--reviews", "v2", "--port", str(base)),
        environment(**proxies),
        watch=range(base, base + 4),
    )
    stdout = wait_until_serving(bookinfo_all)
    for url in summary_urls(base):
        assert url in stdout

    page = wait_for(f"http://{HOST}:{base}/productpage", bookinfo_all)
    for text in ("Book Details", "Book Reviews", "glyphicon glyphicon-star"):
        assert text in page.text
    assert "Reviews served by: reviews-v2-" in page.text
    assert "color: black" in page.text
    for port in range(base, base + 4):
        assert len(processes_serving(port)) >= 1  # each service is a process of its own

    assert bookinfo_all.stop(signal.SIGINT) == 0, bookinfo_all.describe()
    assert_all_stopped(base)
    assert_no_traceback(bookinfo_all.stderr)


def test_serve_all_with_a_taken_port_starts_nothing() -> None:
    base = free_ports(4)
    with socket.socket() as taken:
        taken.bind((HOST, base + 2))
        taken.listen()
        result = run(bookinfo("serve-all", "--port", str(base)), environment())
        assert accepts_connections(base + 2)  # still ours: nothing took it over
    assert_refused(result, str(base + 2), "reviews", "--port")
    assert_all_stopped(base)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_all_stopped_while_starting_stops_what_it_started(
    spawn: Callable[..., Running], signum: int, tmp_path: Path
) -> None:
    base = free_ports(4)
    # Every Python process started with this sitecustomize takes 3 s to boot, so the services are
    # still starting (and serve-all still waiting for them) when the signal arrives.
    slow = tmp_path / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(3)\n")
    env = environment(PYTHONPATH=str(slow))
    bookinfo_all = spawn(
        bookinfo("serve-all", "--port", str(base)), env, watch=range(base, base + 4)
    )
    deadline = time.monotonic() + STARTUP_SECONDS
    while not processes_serving(base + 3):  # the last service has been started
        if bookinfo_all.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"serve-all did not start its services:\n{bookinfo_all.describe()}")
        time.sleep(0.05)  # poll interval
    assert SUMMARY_END not in bookinfo_all.stdout  # still starting

    assert bookinfo_all.stop(signum) == 0
    assert_all_stopped(base)  # serve-all waits for its services before it exits
    assert not any(processes_serving(port) for port in range(base, base + 4))


def test_serve_all_with_a_service_that_cannot_start_says_why() -> None:
    result = run(
        bookinfo("serve-all", "--port", str(free_ports(4))),
        environment(FLOOD_FACTOR="abc"),
    )
    assert result.returncode == 1
    assert_no_traceback(result.stderr)
    assert "FLOOD_FACTOR" in result.stderr


# --- quickstart.sh ------------------------------------------------------------------------------


def make_checkout(tmp_path: Path) -> Path:
    """A copy of what quickstart.sh needs, with a .venv that already exists.

    `.venv/bin/python` hands everything to the interpreter running these tests, except pip: an
    install is only written down in pip-calls.txt, so nothing is downloaded and the real .venv is
    never touched.
    """
    checkout = tmp_path / "checkout"
    (checkout / "scripts" / "lib").mkdir(parents=True)
    for script in ("scripts/quickstart.sh", "scripts/lib/python-env.sh"):
        shutil.copy2(ROOT / script, checkout / script)
    shutil.copy2(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    shutil.copytree(
        ROOT / "bookinfo", checkout / "bookinfo", ignore=shutil.ignore_patterns("__pycache__")
    )
    python = checkout / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -m ] && [ "$2" = pip ]; then\n'
        '  echo "$*" >> "$(dirname "$0")/../../pip-calls.txt"\n'
        "  exit 0\n"
        "fi\n"
        f'exec {shlex.quote(PYTHON)} "$@"\n'
    )
    python.chmod(0o755)
    return checkout


def pip_calls(checkout: Path) -> list[str]:
    log = checkout / "pip-calls.txt"
    return log.read_text().splitlines() if log.exists() else []


def in_bash(code: str, cwd: Path, **variables: str) -> subprocess.CompletedProcess:
    """Run `code` in strict bash after sourcing the library, as the scripts do."""
    script = f"set -o errexit -o nounset -o pipefail\nsource scripts/lib/python-env.sh\n{code}\n"
    return run([BASH, "-c", script], {**environment(), **variables}, cwd=cwd)


def test_quickstart_starts_the_sandbox_mesh(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    assert in_bash("ensure_venv", checkout).returncode == 0  # the set-up of an earlier run
    installs = pip_calls(checkout)
    state = tmp_path / "state"
    gateway, forward = free_ports(), free_ports()
    try:
        result = run(
            [
                BASH,
                "./scripts/quickstart.sh",
                "--gateway-port",
                str(gateway),
                "--port-forward-port",
                str(forward),
            ],
            {**environment(), "ISTIOLAB_STATE_DIR": str(state)},
            cwd=checkout,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"http://127.0.0.1:{forward}/productpage" in result.stdout
        assert "istiolab down" in result.stdout
        page = requests.get(f"http://{HOST}:{forward}/productpage", timeout=20)
        assert "Book Details" in page.text and "Book Reviews" in page.text
        assert pip_calls(checkout) == installs  # .venv was up to date: nothing installed
        assert_no_traceback(result.stderr)
    finally:
        lifecycle.down(state)
    assert not accepts_connections(forward)


# --- scripts/lib/python-env.sh ------------------------------------------------------------------


def test_find_python_without_python_explains_how_to_get_one(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = in_bash("find_python", checkout, PYTHON="/nonexistent/python3", PATH=str(empty))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Python 3.11 or newer is needed" in result.stderr
    assert "sudo apt-get install python3 python3-venv" in result.stderr
    assert "PYTHON=" in result.stderr


def test_find_python_skips_a_python_that_is_too_old(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    old = tmp_path / "old-bin"
    old.mkdir()
    for name in ("python3", "python3.11"):
        fake = old / name
        fake.write_text("#!/bin/sh\nexit 1\n")  # fails the version check, like Python 3.10
        fake.chmod(0o755)
    result = in_bash("find_python", checkout, PYTHON="", PATH=str(old))
    assert result.returncode == 1
    assert "Python 3.11 or newer is needed" in result.stderr


def test_find_python_prints_the_python_it_found(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    result = in_bash("find_python", checkout, PYTHON=PYTHON)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{PYTHON}\n"


def test_ensure_venv_installs_once_per_pyproject_and_extras(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    first = in_bash("ensure_venv dev", checkout)
    assert first.returncode == 0, first.stderr
    assert pip_calls(checkout) == [
        "-m pip install --quiet --upgrade pip",
        "-m pip install --quiet --editable .[dev]",
    ]
    assert "Installing istiolab with [dev]" in first.stdout

    again = in_bash("ensure_venv dev", checkout)
    assert again.returncode == 0
    assert again.stdout == ""
    assert len(pip_calls(checkout)) == 2  # unchanged: nothing to do

    other_extras = in_bash("ensure_venv", checkout)
    assert other_extras.returncode == 0
    assert pip_calls(checkout)[2:] == [
        "-m pip install --quiet --upgrade pip",
        "-m pip install --quiet --editable .",
    ]

    with (checkout / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# changed\n")
    changed = in_bash("ensure_venv", checkout)
    assert changed.returncode == 0
    assert len(pip_calls(checkout)) == 6  # pyproject.toml changed: install again


def test_ensure_venv_without_python_fails_and_creates_nothing(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path)
    shutil.rmtree(checkout / ".venv")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = in_bash("ensure_venv", checkout, PYTHON="/nonexistent/python3", PATH=str(empty))
    assert result.returncode == 1
    assert "Python 3.11 or newer is needed" in result.stderr
    assert not (checkout / ".venv").exists()


def test_ci_runs_the_readme_test_command() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "exec ./scripts/test.sh" in [line.strip() for line in lines]


def test_readme_documents_both_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./scripts/quickstart.sh" in readme
    assert "./scripts/test.sh" in readme


# --- istiolab -----------------------------------------------------------------------------------


def istiolab() -> list[str]:
    beside = Path(PYTHON).parent / "istiolab"
    return [str(beside)] if beside.exists() else [PYTHON, "-m", "istiolab"]


def test_istiolab_version() -> None:
    result = run([*istiolab(), "--version"], environment())
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"istiolab {version('istiolab')}\n"
    assert result.stdout.split()[1].count(".") == 2  # e.g. 0.1.0


def test_istiolab_bookinfo_serve_help() -> None:
    result = run([*istiolab(), "bookinfo", "serve", "--help"], environment())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: istiolab bookinfo serve")
    for option in ("--version", "--host", "--port", "productpage", "ratings"):
        assert option in result.stdout
