"""The `istiolab` command: it wires the scripts and libraries together, and speaks clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def istiolab(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "istiolab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def test_up_runs_cluster_up_with_the_same_flags():
    result = istiolab("up", "--target", "kind", "--dry-run", "--skip-images")
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    assert "+ " in plan and "kind" in plan
    assert "manifests/stages/00-bookinfo" in plan
    assert "Dry run: nothing was changed." in plan


def test_down_runs_cluster_down():
    result = istiolab("down", "--target", "kind", "--dry-run")
    assert result.returncode == 0, result.stderr


def test_doctor_reports_each_failure_with_its_fix(tmp_path):
    # A PATH with bash but no docker: the docker check must fail and say how to fix it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "uname", "cat", "id", "command", "tr", "sed", "awk", "grep", "head"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True)
        if found.stdout.strip().startswith("/"):
            (bin_dir / tool).symlink_to(found.stdout.strip())
    result = istiolab("doctor", env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "docker" in result.stdout
    assert "fix:" in result.stdout
    assert "Traceback" not in result.stderr


def test_validate_reports_a_broken_reference_without_a_traceback(tmp_path):
    bad = tmp_path / "vs.yaml"
    bad.write_text(
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: reviews}\n"
        "spec:\n"
        "  hosts: [reviews]\n"
        "  http:\n"
        "  - route:\n"
        "    - destination: {host: reviews, subset: v9}\n"
    )
    result = istiolab("validate", str(bad))
    assert result.returncode == 1
    assert "IST0101" in result.stdout
    assert "Traceback" not in result.stderr


def test_validate_a_missing_file_is_a_clear_error(tmp_path):
    result = istiolab("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error():
    result = istiolab("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_a_bad_certificate_lifetime_is_refused_before_anything_starts(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "ISTIOLAB_STATE_DIR": str(state), "ISTIOLAB_CERT_TTL": "1h"}
    result = istiolab("up", env=env)
    assert result.returncode == 1
    assert "ISTIOLAB_CERT_TTL='1h' is not a certificate lifetime" in result.stderr
    assert "fix: set it to e.g. ISTIOLAB_CERT_TTL=60" in result.stderr
    assert "Traceback" not in result.stderr
    assert not state.exists()  # no control plane was started
