"""Every shell script in the repository passes shellcheck, and every runnable one is strict.

The scripts are found afresh on each run, so one added later is checked without touching this file:
scripts/**/*.sh, *.sh at the top level, and .ci/run. Scripts under a lib/ folder are sourced by the
others, not run, so they are held to shellcheck only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHEBANG = "#!/usr/bin/env bash"
STRICT = {"errexit", "nounset", "pipefail"}
SHORT_OPTIONS = {"e": "errexit", "u": "nounset"}


def shell_scripts() -> list[Path]:
    found = {*ROOT.glob("scripts/**/*.sh"), *ROOT.glob("*.sh"), ROOT / ".ci" / "run"}
    return sorted(path for path in found if path.is_file())


def runnable_scripts() -> list[Path]:
    """The scripts a person or CI runs: everything in scripts/ except the sourced libraries."""
    scripts = ROOT / "scripts"
    return [
        path
        for path in shell_scripts()
        if path.is_relative_to(scripts) and "lib" not in path.relative_to(scripts).parts[:-1]
    ]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def shellcheck() -> str:
    beside = Path(sys.executable).parent / "shellcheck"
    if beside.exists():
        return str(beside)
    found = shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck is not installed; install the dev extra: pip install -e '.[dev]'")
    return found


def strict_options(text: str) -> set[str]:
    """The shell options turned on by top-level `set` lines: `set -euo pipefail`,
    `set -o errexit -o nounset -o pipefail`, or a mix of the two."""
    options: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"set\s+([^#;&|]*)", line)
        if match is None:
            continue
        words = match.group(1).split()
        for i, word in enumerate(words):
            if not re.fullmatch(r"-[A-Za-z]+", word):
                continue
            options.update(SHORT_OPTIONS[c] for c in word[1:] if c in SHORT_OPTIONS)
            if "o" in word[1:] and i + 1 < len(words):
                options.add(words[i + 1])
    return options


def test_there_are_scripts_to_check() -> None:
    assert shell_scripts(), "found no shell scripts: has the layout changed?"
    assert runnable_scripts(), "found no scripts in scripts/"


@pytest.mark.parametrize("script", shell_scripts(), ids=relative)
def test_shellcheck_finds_nothing(script: Path, tmp_path: Path) -> None:
    # No SHELLCHECK_OPTS and a bare HOME, so a developer's own settings cannot hide a finding;
    # a .shellcheckrc inside the repository still applies, as it would in an editor.
    env = {k: v for k, v in os.environ.items() if k != "SHELLCHECK_OPTS"}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run(
        [shellcheck(), "--severity=style", "--external-sources", "--source-path=SCRIPTDIR",
         "--format=gcc", relative(script)],
        capture_output=True, text=True, cwd=ROOT, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("script", runnable_scripts(), ids=relative)
def test_script_is_executable_bash_in_strict_mode(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    assert text.splitlines()[0] == SHEBANG
    assert os.access(script, os.X_OK), f"chmod +x {relative(script)}"
    missing = STRICT - strict_options(text)
    assert not missing, "add `set -o errexit -o nounset -o pipefail` near the top"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("set -euo pipefail", STRICT),
        ("set -o errexit -o nounset -o pipefail", STRICT),
        ("set -Eeuo pipefail  # strict", STRICT),
        ("set -e", {"errexit"}),
        ("  set -euo pipefail", set()),  # inside a function, not the whole script
        ("# set -euo pipefail", set()),
    ],
)
def test_strict_mode_detection(line: str, expected: set[str]) -> None:
    assert strict_options(line) == expected
