"""The sandbox's process supervisor, with real processes.

Every process here is real: `python -m http.server` on a loopback port, or a small Python
one-liner that crashes, floods its log, ignores SIGTERM or starts a helper. A control-plane crash
is played by closing a Supervisor without stopping its processes (close(stop_processes=False))
and opening a new one on the same state directory. Back-off and poll times are shortened through
the constructor. Teardown stops, by pid, every process a supervisor reported, and only while the
pid still has the start time it had (see identity.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from istiolab.sandbox.processes import logs
from istiolab.sandbox.processes.backoff import BackoffPolicy
from istiolab.sandbox.processes.identity import (
    HAS_PROC,
    ProcessIdentity,
    cmdline_matches,
    identify,
    members,
)
from istiolab.sandbox.supervisor import (
    BACKOFF,
    CRASHED,
    RUNNING,
    STOPPED,
    ProcessNotReady,
    ProcessSpec,
    Supervisor,
    SupervisorError,
)

HOST = "127.0.0.1"
FAST = {
    "backoff_initial": 0.05,
    "backoff_cap": 0.4,
    "backoff_reset": 30.0,
    "poll_interval": 0.01,
    "probe_period": 0.2,
    "probe_timeout": 0.5,
}
PY = sys.executable

linux_only = pytest.mark.skipif(not HAS_PROC, reason="adoption relies on /proc (Linux)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def web(name: str, port: int, **options: object) -> ProcessSpec:
    """A real HTTP server on loopback, ready when its port accepts connections."""
    argv = [PY, "-m", "http.server", "--bind", HOST, str(port)]
    return ProcessSpec(name, argv, ready=("tcp", port), ports=[port], **options)


def one_liner(name: str, code: str, **options: object) -> ProcessSpec:
    return ProcessSpec(name, [PY, "-c", code], **options)


def eventually(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what or condition}"
        time.sleep(0.005)  # poll interval inside a deadline


def alive(seen: ProcessIdentity) -> bool:
    now = identify(seen.pid)
    return now is not None and now.start_time == seen.start_time


def identity_of(pid: int | None) -> ProcessIdentity:
    assert pid is not None
    seen = identify(pid)
    assert seen is not None, f"pid {pid} is not running"
    return seen


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def supervisor(state_dir: Path) -> Iterator[Callable[..., Supervisor]]:
    """Make Supervisors on the test's state directory; teardown stops all their processes."""
    made: list[Supervisor] = []

    def make(**settings: object) -> Supervisor:
        sup = Supervisor(state_dir, **{**FAST, **settings})
        made.append(sup)
        return sup

    yield make
    started = [
        seen
        for sup in made
        for status in sup.status()
        if status.pid is not None and (seen := identify(status.pid)) is not None
    ]
    for sup in made:
        sup.close(stop_processes=True, timeout=2)
    for seen in started:  # a safety net, by pid, only for the very same process
        if alive(seen):
            os.killpg(seen.pid, signal.SIGKILL)
    eventually(lambda: not any(alive(seen) for seen in started), what="teardown")


@pytest.fixture
def foreign() -> Iterator[subprocess.Popen[bytes]]:
    """A process the supervisor did not start (started here, in its own session)."""
    process = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def test_a_process_starts_in_its_own_session_becomes_ready_and_stops(supervisor) -> None:
    sup = supervisor()
    port = free_port()
    spec = ProcessSpec(
        "web",
        [PY, "-m", "http.server", "--bind", HOST, str(port)],
        ready=("http", f"http://{HOST}:{port}/"),
        kind="proxy",
        ports=[port],
    )

    started = sup.start(spec)
    sup.wait_ready(["web"], timeout=10)

    status = sup.status_of("web")
    assert (status.state, status.ready, status.restarts, status.kind, status.ports) == (
        RUNNING,
        True,
        0,
        "proxy",
        (port,),
    )
    assert status.pid == started.pid and status.pid is not None
    assert os.getsid(status.pid) == status.pid  # Ctrl-C in the terminal does not reach it
    assert listening(port)
    seen = identity_of(status.pid)

    stopped = sup.stop("web", timeout=5)
    assert (stopped.state, stopped.pid, stopped.ready) == (STOPPED, None, False)
    assert stopped.last_exit == -signal.SIGTERM
    assert not alive(seen)
    assert not listening(port)
    tail = "\n".join(sup.log_tail("web"))
    assert f"Serving HTTP on {HOST} port {port}" in tail  # the process's own output
    assert "stopped web" in tail  # and the supervisor's markers


def test_kill_9_of_a_process_is_recovered_and_counted(supervisor) -> None:
    sup = supervisor()
    port = free_port()
    first = sup.start(web("web", port))
    sup.wait_ready(["web"], timeout=10)

    os.kill(first.pid, signal.SIGKILL)

    eventually(lambda: sup.status_of("web").restarts == 1, what="the restart")
    sup.wait_ready(["web"], timeout=10)
    status = sup.status_of("web")
    assert status.pid != first.pid
    assert (status.state, status.ready, status.last_exit) == (RUNNING, True, -signal.SIGKILL)
    assert listening(port)
    marker = f"web (pid {first.pid}) was killed by SIGKILL; restarting in 0.05 s"
    assert marker in "\n".join(sup.log_tail("web"))


def test_a_crash_loop_backs_off_doubling_up_to_the_cap(supervisor) -> None:
    sup = supervisor(backoff_initial=0.05, backoff_cap=0.2)
    began = time.monotonic()
    sup.start(one_liner("crasher", "print('boom', flush=True); raise SystemExit(3)"))

    delays: dict[int, float] = {}  # restart count -> the back-off seen after it

    def five_restarts() -> bool:
        status = sup.status_of("crasher")
        if status.state == BACKOFF:
            delays[status.restarts] = status.backoff
        return status.restarts >= 5

    eventually(five_restarts, what="five restarts")
    elapsed = time.monotonic() - began

    assert [delays[n] for n in sorted(delays)][:4] == [0.05, 0.1, 0.2, 0.2]
    assert max(delays.values()) == 0.2  # capped
    assert elapsed >= 0.05 + 0.1 + 0.2 + 0.2 + 0.2  # it really waited
    status = sup.status_of("crasher")
    assert status.last_exit == 3
    assert "boom" in sup.log_tail("crasher")


def test_the_backoff_policy_is_crashloopbackoff() -> None:
    policy = BackoffPolicy(initial=0.5, cap=30, reset_after=60)
    delays = [0.0]
    for _ in range(9):
        delays.append(policy.next_delay(delays[-1], ran_for=1))
    assert delays[1:] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.next_delay(30, ran_for=60) == 0.5  # a healthy run resets it
    with pytest.raises(ValueError):
        BackoffPolicy(initial=5, cap=1)


def test_a_process_that_exits_at_once_is_reported_with_its_log(supervisor) -> None:
    sup = supervisor()
    code = "import sys; print('fatal: no such config', file=sys.stderr); sys.exit(2)"
    sup.start(one_liner("once", code, ready=("tcp", free_port()), restart=False))
    sup.start(one_liner("looping", code, ready=("tcp", free_port())))

    began = time.monotonic()
    with pytest.raises(ProcessNotReady) as not_ready:
        sup.wait_ready(["once"], timeout=20)
    assert time.monotonic() - began < 5  # told at once, not at the deadline
    assert not_ready.value.name == "once"
    message = str(not_ready.value)
    assert "once is not ready: it exited with status 2 and is not restarted" in message
    assert "fatal: no such config" in message
    assert sup.status_of("once").state == CRASHED

    with pytest.raises(ProcessNotReady) as not_ready:
        sup.wait_ready(["looping"], timeout=0.5)
    message = str(not_ready.value)
    assert message.startswith("looping is not ready after 0.5 s: it ")
    assert "it was restarted" in message  # crash looping: in back-off, or just started again
    assert "last exited with status 2" in message
    assert "fatal: no such config" in message
    assert "fatal: no such config" in sup.log_tail("looping")


def test_logs_are_capped(supervisor, state_dir: Path) -> None:
    cap = 20_000
    sup = supervisor(log_max_bytes=cap)
    log_path = state_dir / "logs" / "chatty.log"
    previous = logs.previous_path(log_path)
    # About 360 kB of output, then, once the log has been cut down to size, one last line.
    code = (
        "import os, time\n"
        "for i in range(4000): print(f'line {i:06d} ' + 'x' * 80, flush=True)\n"
        "deadline = time.monotonic() + 10\n"
        f"while not (os.path.exists({str(previous)!r}) and "
        f"os.path.getsize({str(log_path)!r}) <= {cap}):\n"
        "    assert time.monotonic() < deadline\n"
        "    time.sleep(0.005)\n"
        "print('the end', flush=True)\n"
        "time.sleep(120)\n"
    )
    sup.start(one_liner("chatty", code, log_path=log_path))

    eventually(lambda: "the end" in sup.log_tail("chatty", 3), what="the last line")
    assert log_path.stat().st_size <= cap
    assert previous.stat().st_size <= cap
    kept = previous.read_text().splitlines() + log_path.read_text().splitlines()
    output = [line for line in kept if not line.startswith(logs.MARKER)]
    assert output[-1] == "the end"
    # What is kept is the end of the flood, in order. (Lines written in the instant of a
    # rotation may be lost or cut, as with logrotate's copytruncate.)
    numbers = [int(line[5:11]) for line in output if re.fullmatch(r"line \d{6} x{80}", line)]
    assert len(numbers) > len(output) // 2
    assert numbers == sorted(numbers) and numbers[0] > 0


@linux_only
def test_the_state_is_persisted(supervisor, state_dir: Path) -> None:
    sup = supervisor()
    port = free_port()
    status = sup.start(web("web", port, env={"GREETING": "hello"}, kind="app"))
    sup.wait_ready(timeout=10)

    path = state_dir / "processes.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the environments
    (record,) = json.loads(path.read_text())["processes"]
    proc_stat = Path(f"/proc/{status.pid}/stat").read_text()
    start_time = proc_stat[proc_stat.rfind(")") + 2 :].split()[19]  # field 22
    assert record["pid"] == status.pid
    assert record["start_time"] == start_time
    assert record["cmdline"] == [PY, "-m", "http.server", "--bind", HOST, str(port)]
    assert record["state"] == RUNNING
    assert record["spec"]["env"] == {"GREETING": "hello"}
    assert record["spec"]["ready"] == ["tcp", port]


@linux_only
def test_a_new_supervisor_adopts_restarts_and_stops_the_processes(supervisor) -> None:
    first = supervisor()
    ports = {name: free_port() for name in ("a", "b", "c")}
    for name, port in ports.items():
        first.start(web(name, port))
    first.wait_ready(timeout=10)
    before = {status.name: identity_of(status.pid) for status in first.status()}

    first.close(stop_processes=False)  # the control plane crashes ...
    os.kill(before["c"].pid, signal.SIGKILL)  # ... and c dies while nobody watches
    eventually(lambda: not alive(before["c"]))

    second = supervisor()
    adopted = {status.name: status for status in second.status()}
    assert adopted["a"].pid == before["a"].pid and adopted["a"].adopted
    assert adopted["b"].pid == before["b"].pid and adopted["b"].adopted
    eventually(lambda: second.status_of("c").restarts == 1, what="c restarted")
    second.wait_ready(timeout=10)
    assert all(status.ready for status in second.status())
    assert not second.status_of("c").adopted

    os.kill(before["a"].pid, signal.SIGKILL)  # an adopted process dies
    eventually(lambda: second.status_of("a").restarts == 1, what="a restarted")
    second.wait_ready(["a"], timeout=10)
    a = second.status_of("a")
    assert a.pid != before["a"].pid and not a.adopted and a.last_exit is None  # status unknown
    now = {status.name: identity_of(status.pid) for status in second.status()}

    second.stop_all(timeout=5)

    assert all(status.state == STOPPED for status in second.status())
    assert not any(alive(seen) for seen in [*before.values(), *now.values()])
    assert not any(listening(port) for port in ports.values())


# A control plane in a process of its own: it starts a web server, prints its pid, and waits.
CONTROL_PLANE = """
import sys
from istiolab.sandbox.supervisor import ProcessSpec, Supervisor
state_dir, port = sys.argv[1], sys.argv[2]
argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", port]
sup = Supervisor(state_dir, poll_interval=0.01)
sup.start(ProcessSpec("web", argv, ready=("tcp", int(port))))
sup.wait_ready(timeout=10)
print(sup.status_of("web").pid, flush=True)
sys.stdin.read()
"""


@linux_only
def test_a_control_plane_killed_with_sigkill_is_taken_over(supervisor, state_dir: Path) -> None:
    port = free_port()
    control_plane = subprocess.Popen(
        [PY, "-c", CONTROL_PLANE, str(state_dir), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    web: ProcessIdentity | None = None
    try:
        assert control_plane.stdout is not None
        web = identity_of(int(control_plane.stdout.readline()))
        control_plane.kill()  # the control plane crashes; its processes keep running
        control_plane.wait()
        assert alive(web) and listening(port)

        sup = supervisor()  # its lock died with it
        (adopted,) = sup.status()
        assert (adopted.name, adopted.pid, adopted.adopted) == ("web", web.pid, True)
        sup.wait_ready(timeout=10)
        sup.stop_all(timeout=5)

        assert not alive(web) and not listening(port)
    finally:
        control_plane.kill()
        control_plane.wait()
        for stream in (control_plane.stdin, control_plane.stdout):
            if stream is not None:
                stream.close()
        if web is not None and alive(web):
            os.killpg(web.pid, signal.SIGKILL)


def test_one_supervisor_per_state_directory(supervisor) -> None:
    first = supervisor()
    with pytest.raises(SupervisorError, match="another istiolab control plane is managing"):
        supervisor()
    first.close(stop_processes=False)
    supervisor()  # a crashed (here: closed) control plane does not block the next one


@linux_only
def test_a_recycled_or_foreign_pid_is_never_killed(
    supervisor, state_dir: Path, foreign: subprocess.Popen[bytes]
) -> None:
    real = identity_of(foreign.pid)
    ports = [free_port(), free_port()]
    recycled = web("recycled", ports[0]).to_record()  # the pid now runs something else
    renamed = web("renamed", ports[1]).to_record()  # same pid and start time, other command
    state_dir.mkdir(parents=True)
    (state_dir / "processes.json").write_text(
        json.dumps(
            {
                "format": 1,
                "processes": [
                    {
                        "name": "recycled",
                        "state": RUNNING,
                        "pid": foreign.pid,
                        "start_time": str(int(real.start_time) - 1),
                        "cmdline": recycled["argv"],
                        "spec": recycled,
                    },
                    {
                        "name": "renamed",
                        "state": RUNNING,
                        "pid": foreign.pid,
                        "start_time": real.start_time,
                        "cmdline": renamed["argv"],
                        "spec": renamed,
                    },
                ],
            }
        )
    )

    sup = supervisor()  # neither is adopted: both are started afresh
    sup.wait_ready(timeout=10)
    assert all(s.pid != foreign.pid and not s.adopted for s in sup.status())
    sup.stop_all(timeout=5)

    assert foreign.poll() is None and alive(real)
    assert not any(listening(port) for port in ports)


def test_stop_all_leaves_no_process_and_no_port(supervisor) -> None:
    sup = supervisor()
    web_port, stubborn_port = free_port(), free_port()
    stubborn = (
        "import signal, socket, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "server = socket.socket()\n"
        "server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"server.bind(('127.0.0.1', {stubborn_port}))\n"
        "server.listen()\n"
        "time.sleep(120)\n"
    )
    sup.start(web("web", web_port))
    sup.start(one_liner("stubborn", stubborn, ready=("tcp", stubborn_port)))
    sup.start(one_liner("crasher", "raise SystemExit(1)"))
    sup.wait_ready(["web", "stubborn"], timeout=10)
    running = [identity_of(s.pid) for s in sup.status() if s.name != "crasher" and s.pid]
    if HAS_PROC:  # the stubborn one's helper, in its session
        running += members(session=sup.status_of("stubborn").pid)

    began = time.monotonic()
    sup.stop_all(timeout=0.3)

    assert time.monotonic() - began < 5
    assert not any(alive(seen) for seen in running)
    assert not listening(web_port) and not listening(stubborn_port)
    statuses = {s.name: s for s in sup.status()}
    assert all(s.state == STOPPED and s.pid is None for s in statuses.values())
    assert statuses["stubborn"].last_exit == -signal.SIGKILL  # it ignored SIGTERM


def test_start_is_idempotent_and_restart_replaces_the_process(supervisor) -> None:
    sup = supervisor()
    port = free_port()
    first = sup.start(web("web", port))
    assert sup.start(web("web", port)).pid == first.pid  # same command: kept

    other = web("web", free_port())
    with pytest.raises(SupervisorError, match="already running a different command"):
        sup.start(other)
    replaced = sup.start(other, replace=True)
    assert replaced.pid != first.pid
    eventually(lambda: identify(first.pid) is None, what="the old one gone")

    restarted = sup.restart("web")
    assert restarted.pid != replaced.pid
    assert restarted.restarts == 0  # requested restarts are not crashes
    sup.wait_ready(timeout=10)

    sup.remove("web")
    assert sup.status() == []
    with pytest.raises(SupervisorError, match="no process named 'web'"):
        sup.stop("web")


def test_a_command_that_cannot_start_is_a_clear_error(supervisor, tmp_path: Path) -> None:
    sup = supervisor()
    missing = tmp_path / "no-such-program"
    with pytest.raises(SupervisorError, match=r"cannot start ghost: .*No such file"):
        sup.start(ProcessSpec("ghost", [str(missing)]))
    assert sup.status_of("ghost").state == CRASHED


def test_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="process name"):
        ProcessSpec("../etc", [PY])
    with pytest.raises(ValueError, match="argv"):
        ProcessSpec("x", [])
    with pytest.raises(ValueError, match="readiness probe"):
        ProcessSpec("x", [PY], ready=("udp", 53))
    spec = ProcessSpec("x", [PY, "-V"], {"A": 1}, ready=["http", "http://127.0.0.1:1/ready"])
    assert ProcessSpec.from_record(spec.to_record()) == spec


@pytest.mark.skipif(not HAS_PROC, reason="Linux command lines")
def test_command_lines_match_through_interpreters_and_wrappers() -> None:
    argv = ["/venv/bin/envoy", "-c", "envoy.yaml"]
    assert cmdline_matches(argv, argv)
    # run by its #! interpreter, then exec()ing the real binary with the same arguments
    assert cmdline_matches(["/usr/bin/python3", "/venv/bin/envoy", "-c", "envoy.yaml"], argv)
    assert cmdline_matches(["envoy", "-c", "envoy.yaml"], argv)
    assert not cmdline_matches(["/usr/bin/sleep", "-c", "envoy.yaml"], argv)
    assert not cmdline_matches(["/venv/bin/envoy", "-c", "other.yaml"], argv)
    assert not cmdline_matches([], argv)
    assert cmdline_matches(["gunicorn: master"], ["python", "-m", "x"], known=["gunicorn: master"])
