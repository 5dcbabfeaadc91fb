"""The documentation checked against what it describes, so that it cannot drift.

- Versions: docs/kind.md names every version versions.env pins, at its current value, and no
  other Istio, kind, Gateway API, node image or Bookinfo tag version. Every page is scanned for
  the versions written next to their names ("Istio 1.x.y", "kind vX", "Gateway API vX", ...).
- Scripts: every `scripts/<name>.sh --flag` in docs/*.md and README.md uses a flag the script
  accepts: one its `--help` lists, or, for a script without --help (quickstart.sh, test.sh), one
  its usage comment documents.
- Links: every relative Markdown link points at a file that exists, and an #anchor at a heading.
- Commands: every `istiolab <command>` in a code span or code block is a command that
  `istiolab --help` lists, with options that `istiolab <command> --help` lists.
- The steps docs/kind.md shows are the steps scripts/cluster-up.sh prints.

The scripts and the CLI are run for real: `--help`, and cluster-up.sh's `--dry-run`, change
nothing and need neither Docker nor a cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from istiolab import versions

ROOT = Path(__file__).resolve().parent.parent
KIND_DOC = ROOT / "docs" / "kind.md"
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

PINS = versions.load()
NODE_IMAGE_TAG, _, NODE_IMAGE_DIGEST = PINS["KIND_NODE_IMAGE"].partition("@")
NODE_KUBERNETES = NODE_IMAGE_TAG.rpartition(":")[2]  # kindest/node:v1.36.1 -> v1.36.1

# Options as help texts and usage comments write them: --dry-run, -h, --format=plain.
OPTION = re.compile(r"(?<![\w/.-])--?[A-Za-z][\w-]*")
# Where a command in a line of text ends: a pipe, &&, ;, a comment, a closing ` or ).
COMMAND_END = "\n`|;&#)"
SCRIPT_CALL = re.compile(rf"(?<![\w/.-])(?:\./)?scripts/([\w-]+)\.sh(?![\w.-])([^{COMMAND_END}]*)")
# A fenced code block, also one indented inside a list item: its fence, language and content.
FENCE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL
)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# Fenced blocks in these languages (or none) hold commands; text, yaml and the like do not.
COMMAND_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def option_name(token: str) -> str | None:
    """--format=plain -> --format; a token that is not an option -> None."""
    token = token.strip("\"'").rstrip(".,:")
    match = OPTION.fullmatch(token.split("=", 1)[0])
    return match.group(0) if match else None


# --- (a) pinned versions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """A pattern that finds a version in the docs, and the value versions.env pins for it."""

    what: str
    pattern: re.Pattern[str]
    expected: str


V3 = r"\d+\.\d+\.\d+"
# Between a name and its version: spaces, table bars, backticks, "=", ":" or "-" (istio-1.30.5).
SEP = r"[\s`|:=*-]+"

# Found on every page: a version written right after what it is the version of.
NAMED_PINS = (
    Pin("Istio", re.compile(rf"(?i)(?<![\w-])istio(?:ctl)?{SEP}(?:version\s+)?v?({V3})(?![\w.])"),
        PINS["ISTIO_VERSION"]),
    Pin("Istio", re.compile(rf"ISTIO_VERSION{SEP}v?({V3})(?![\w.])"), PINS["ISTIO_VERSION"]),
    Pin("kind", re.compile(rf"(?i)(?<![\w-])kind{SEP}(v?{V3})(?![\w.])"), PINS["KIND_VERSION"]),
    Pin("kind", re.compile(rf"KIND_VERSION{SEP}(v?{V3})(?![\w.])"), PINS["KIND_VERSION"]),
    Pin("the kind node image", re.compile(r"kindest/node:([\w.-]+)"), NODE_KUBERNETES),
    Pin("the kind node image's digest", re.compile(r"kindest/node:[\w.-]+@(sha256:[0-9a-f]+)"),
        NODE_IMAGE_DIGEST),
    Pin("Kubernetes (the node image)", re.compile(rf"Kubernetes\s+(v{V3})(?![\w.])"),
        NODE_KUBERNETES),
    Pin("kubectl for the node image", re.compile(rf"dl\.k8s\.io/release/(v{V3})/"),
        NODE_KUBERNETES),
    Pin("the Gateway API CRDs",
        re.compile(rf"(?i)gateway[\s-]api(?:\s+crds?)?{SEP}(?:at\s+)?(v?{V3})(?![\w.])"),
        PINS["GATEWAY_API_VERSION"]),
    Pin("the Gateway API CRDs", re.compile(rf"GATEWAY_API_VERSION{SEP}(v?{V3})(?![\w.])"),
        PINS["GATEWAY_API_VERSION"]),
    Pin("the Gateway API CRDs", re.compile(rf"gateway-api/config/crd\?ref=(v?{V3})"),
        PINS["GATEWAY_API_VERSION"]),
    Pin("the Bookinfo images", re.compile(r"examples-bookinfo-[\w<>-]*:([\w.-]+)"),
        PINS["BOOKINFO_IMAGE_TAG"]),
    Pin("the Bookinfo images", re.compile(r"BOOKINFO_IMAGE_TAG[\s`|:=]+([\w.-]*\d[\w.-]*)"),
        PINS["BOOKINFO_IMAGE_TAG"]),
)  # fmt: skip

# Found on docs/kind.md only, where every such number is a pin: a bare 1.x.y is an Istio version
# (Kubernetes and the Gateway API are written v1.x.y), and a v0.x.y is kind's.
BARE_PINS = (
    Pin("Istio", re.compile(r"(?<![\w.])(1\.\d+\.\d+)(?![\w.])"), PINS["ISTIO_VERSION"]),
    Pin("kind", re.compile(r"(?<![\w.])(v0\.\d+\.\d+)(?![\w.])"), PINS["KIND_VERSION"]),
)

REQUIRED_IN_KIND_DOC = {
    "ISTIO_VERSION": PINS["ISTIO_VERSION"],
    "KIND_VERSION": PINS["KIND_VERSION"],
    "KIND_NODE_IMAGE (its tag)": NODE_IMAGE_TAG,
    "GATEWAY_API_VERSION": PINS["GATEWAY_API_VERSION"],
    "BOOKINFO_IMAGE_TAG": PINS["BOOKINFO_IMAGE_TAG"],
}


def stale_versions(text: str, pins: tuple[Pin, ...]) -> list[str]:
    """One line for each version in the text that is not the pinned one (the first pattern that
    finds a version reports it)."""
    found: dict[int, str] = {}
    for pin in pins:
        for match in pin.pattern.finditer(text):
            if match.group(1) != pin.expected and match.start(1) not in found:
                found[match.start(1)] = (
                    f"line {line_of(text, match.start())}: {match.group(0)!r} gives {pin.what}"
                    f" as {match.group(1)}, but versions.env pins {pin.expected}"
                )
    return [found[offset] for offset in sorted(found)]


@pytest.mark.parametrize(("key", "value"), REQUIRED_IN_KIND_DOC.items())
def test_kind_doc_names_the_pinned_version(key: str, value: str) -> None:
    assert value in KIND_DOC.read_text(encoding="utf-8"), (
        f"docs/kind.md does not mention {value}, the {key} pinned in versions.env"
    )


def test_kind_doc_names_no_other_version() -> None:
    stale = stale_versions(KIND_DOC.read_text(encoding="utf-8"), NAMED_PINS + BARE_PINS)
    assert not stale, "docs/kind.md disagrees with versions.env:\n" + "\n".join(stale)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_versions_named_on_a_page_are_the_pinned_ones(page: Path) -> None:
    stale = stale_versions(page.read_text(encoding="utf-8"), NAMED_PINS)
    assert not stale, f"{page_id(page)} disagrees with versions.env:\n" + "\n".join(stale)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("Install Istio 1.29.0 first", "Istio"),
        ("istioctl 1.31.0 for the labs", "Istio"),
        ("| `ISTIO_VERSION` | `1.2.3` |", "Istio"),
        ("untar istio-1.29.0-linux-amd64.tar.gz", "Istio"),
        ("Downloading kind v0.31.0", "kind"),
        (".bin/kind-v0.30.0/kind", "kind"),
        ("the Gateway API CRDs v1.4.0", "the Gateway API CRDs"),
        (
            "kubectl kustomize github.com/kubernetes-sigs/gateway-api/config/crd?ref=v1.4.0",
            "the Gateway API CRDs",
        ),
        ("kindest/node:v1.35.0 runs", "the kind node image"),
        ("Creating the kind cluster istiolab (Kubernetes v1.35.0)", "Kubernetes (the node image)"),
        ("examples-bookinfo-reviews-v3:0.0.9", "the Bookinfo images"),
    ],
)
def test_a_stale_version_is_caught(text: str, what: str) -> None:
    stale = stale_versions(text, NAMED_PINS)
    assert stale and all(f"gives {what} as" in line for line in stale), stale


def test_bare_numbers_are_caught_on_the_kind_page() -> None:
    stale = stale_versions("`istioctl version` should report 1.29.0, kind v0.31.0", BARE_PINS)
    assert len(stale) == 2, stale
    # Kubernetes, addresses and the Bookinfo tag are not mistaken for Istio or kind.
    assert not stale_versions(f"v1.29.0 127.0.0.1 {PINS['BOOKINFO_IMAGE_TAG']}", BARE_PINS)


# --- (b) the scripts' options -------------------------------------------------------------------


SOURCE = re.compile(r"(?m)^\s*(?:source|\.)\s+\"?(scripts/[\w./-]+\.sh)\"?")
HELP_BRANCH = re.compile(r"(?m)^\s*(?:-h\s*\|\s*)?--help\s*\)")


def has_help_option(script: Path, seen: frozenset[Path] = frozenset()) -> bool:
    """Does the script, or a library it sources, have a `--help)` branch in its option `case`?"""
    text = script.read_text(encoding="utf-8")
    if HELP_BRANCH.search(text):
        return True
    libraries = {ROOT / name for name in SOURCE.findall(text)} - seen - {script}
    return any(
        has_help_option(library, seen | {script}) for library in libraries if library.is_file()
    )


def usage_comment(script: Path) -> str:
    """The comment at the top of a script, after the #! line: where its usage is written."""
    lines = script.read_text(encoding="utf-8").splitlines()[1:]
    comment = []
    for line in lines:
        if not line.startswith("#"):
            break
        comment.append(line)
    return "\n".join(comment)


@cache
def pytest_options() -> frozenset[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return frozenset(OPTION.findall(result.stdout))


@cache
def script_options(name: str) -> tuple[frozenset[str], str]:
    """The options scripts/<name>.sh accepts, and where that was read."""
    script = ROOT / "scripts" / f"{name}.sh"
    if has_help_option(script):
        result = subprocess.run(
            ["bash", str(script), "--help"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"scripts/{name}.sh --help failed:\n{result.stderr}"
        return frozenset(OPTION.findall(result.stdout)), "its --help"
    usage = usage_comment(script)
    options = set(OPTION.findall(usage))
    if "PYTEST_ARGS" in usage:  # test.sh hands its arguments to pytest
        options |= pytest_options()
    return frozenset(options), "its usage comment"


def script_calls(text: str) -> list[tuple[int, str, list[str]]]:
    """(line, script name, options) for each scripts/<name>.sh in the text."""
    calls = []
    for match in SCRIPT_CALL.finditer(text):
        options = [name for token in match.group(2).split() if (name := option_name(token))]
        calls.append((line_of(text, match.start()), match.group(1), options))
    return calls


def test_the_pages_show_script_calls_with_options() -> None:
    calls = [call for page in PAGES for call in script_calls(page.read_text(encoding="utf-8"))]
    assert any(options for _, _, options in calls), "no `scripts/<name>.sh --option` found"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_script_options_in_the_docs_exist(page: Path) -> None:
    problems = []
    for line, name, options in script_calls(page.read_text(encoding="utf-8")):
        if not (ROOT / "scripts" / f"{name}.sh").is_file():
            problems.append(f"line {line}: scripts/{name}.sh does not exist")
            continue
        known, source = script_options(name)
        problems += [
            f"line {line}: scripts/{name}.sh {option}: not an option {source} lists"
            for option in options
            if option not in known
        ]
    assert not problems, f"{page_id(page)}:\n" + "\n".join(problems)


def test_script_calls_are_read_up_to_the_end_of_the_command() -> None:
    text = (
        "Run `./scripts/cluster-up.sh --check` first.\n"
        "scripts/cluster-down.sh --dry-run && ./scripts/cluster-up.sh --skip-images  # --bogus\n"
        "IMAGE_PREFIX=x/ scripts/images.sh --platforms=linux/amd64 --push | tee log --bogus\n"
        "see scripts/lib/cluster.sh --bogus, and (scripts/test.sh -k ratings -x).\n"
    )
    assert script_calls(text) == [
        (1, "cluster-up", ["--check"]),
        (2, "cluster-down", ["--dry-run"]),
        (2, "cluster-up", ["--skip-images"]),
        (3, "images", ["--platforms", "--push"]),
        (4, "test", ["-k", "-x"]),
    ]


def test_options_come_from_help_or_the_usage_comment() -> None:
    up, source = script_options("cluster-up")
    assert source == "its --help"
    assert {"--check", "--dry-run", "--context", "--allow-other-context"} <= up
    assert "--delete-downloads" not in up
    quickstart, source = script_options("quickstart")
    assert source == "its usage comment"
    assert {"--gateway-port", "--port-forward-port"} <= quickstart
    assert {"-k", "-x", "--lf"} <= script_options("test")[0]


# --- (c) links ----------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REFERENCE = re.compile(r"(?m)^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def without_code(text: str) -> str:
    """The text with code blocks and code spans blanked out (line numbers kept)."""

    def blank(match: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    return INLINE_CODE.sub(blank, FENCE.sub(blank, text))


def slug(heading: str) -> str:
    """A heading's anchor, as Python-Markdown's toc extension (mkdocs) makes it."""
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def anchors(page: Path) -> set[str]:
    text = without_code(page.read_text(encoding="utf-8"))
    return {slug(match.group(1)) for match in re.finditer(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", text)}


def relative_links(text: str) -> list[tuple[int, str]]:
    text = without_code(text)
    found = [(m.start(), m.group(1)) for m in (*LINK.finditer(text), *REFERENCE.finditer(text))]
    return sorted(
        (line_of(text, offset), target)
        for offset, target in found
        if not SCHEME.match(target) and not target.startswith("//")
    )


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    problems = []
    for line, target in relative_links(page.read_text(encoding="utf-8")):
        path, _, fragment = target.partition("#")
        path = path.split("?", 1)[0]
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"line {line}: {target}: {path} does not exist")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            problems.append(f"line {line}: {target}: {linked.name} has no heading #{fragment}")
    assert not problems, f"{page_id(page)}:\n" + "\n".join(problems)


def test_links_are_found_outside_code_only() -> None:
    text = (
        "See [Bookinfo](bookinfo.md#routes) and ![a diagram](img/a.png 'title').\n"
        "`[not](a-link.md)` and <https://example.com> and [web](https://istio.io).\n"
        "```\n[nor](this.md)\n```\n"
        "[ref]: ../README.md\n"
    )
    assert relative_links(text) == [
        (1, "bookinfo.md#routes"),
        (1, "img/a.png"),
        (6, "../README.md"),
    ]
    assert slug("Images ignored after kind load") == "images-ignored-after-kind-load"
    assert slug("Exit status 3: refusing to act on a context") == (
        "exit-status-3-refusing-to-act-on-a-context"
    )


# --- (d) istiolab commands ----------------------------------------------------------------------


def istiolab_help(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "istiolab", *words, "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@cache
def istiolab_commands() -> frozenset[str]:
    result = istiolab_help()
    assert result.returncode == 0, result.stderr
    # argparse lists each command on its own line, indented by four spaces, with its aliases in
    # parentheses: "    proxy-config (pc)".
    names = set()
    for name, aliases in re.findall(
        r"(?m)^ {4}([a-z][\w-]*)(?: \(([\w, -]+)\))?(?: {2,}|$)", result.stdout
    ):
        names.add(name)
        names.update(alias.strip() for alias in aliases.split(",") if alias.strip())
    return frozenset(names)


@cache
def istiolab_options(words: tuple[str, ...]) -> frozenset[str] | None:
    result = istiolab_help(*words)
    return frozenset(OPTION.findall(result.stdout)) if result.returncode == 0 else None


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line, code) for each code span and each line of a command block (bash, sh or none)."""
    found = []  # (offset, code)
    for match in FENCE.finditer(text):
        if match.group(2).lower() in COMMAND_LANGUAGES:
            offset = match.start(3)
            for line in match.group(3).splitlines(keepends=True):
                found.append((offset, line.rstrip("\n")))
                offset += len(line)
    prose = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    found += [(m.start(), m.group(2)) for m in INLINE_CODE.finditer(prose)]
    return [(line_of(text, offset), code) for offset, code in sorted(found)]


def istiolab_calls(code: str) -> list[tuple[str, list[str], list[str]]]:
    """(command, its sub-command words, its options) for each `istiolab COMMAND ...` in code."""
    calls = []
    for command in re.split(r"&&|\|\||[|;]", code.split("#", 1)[0]):
        tokens = [token.strip("\"'") for token in command.split()]
        for i, token in enumerate(tokens):
            invoked = token == "istiolab" or token.endswith("/istiolab")
            # `--name istiolab` and `--kind-cluster istiolab` name the cluster, not the command.
            if not invoked or (i > 0 and tokens[i - 1].startswith("-") and tokens[i - 1] != "-m"):
                continue
            rest = tokens[i + 1 :]
            if not rest or not re.fullmatch(r"[a-z][\w-]*", rest[0]):
                continue
            words = []
            for word in rest:
                if not re.fullmatch(r"[a-z][\w-]*", word):
                    break
                words.append(word)
            # Everything after `--` belongs to another command (istiolab exec -- curl -s ...).
            own = rest[: rest.index("--")] if "--" in rest else rest
            options = [name for word in own if (name := option_name(word))]
            calls.append((rest[0], words, options))
    return calls


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_istiolab_commands_in_the_docs_exist(page: Path) -> None:
    problems = []
    for line, code in code_lines(page.read_text(encoding="utf-8")):
        for command, words, options in istiolab_calls(code):
            if command not in istiolab_commands():
                listed = ", ".join(sorted(istiolab_commands()))
                problems.append(
                    f"line {line}: istiolab {command}: not a command of istiolab (it has {listed})"
                )
                continue
            known = istiolab_options(tuple(words))
            if known is None:
                problems.append(f"line {line}: istiolab {' '.join(words)} --help fails")
                continue
            problems += [
                f"line {line}: istiolab {command} {option}: not an option of `istiolab"
                f" {' '.join(words)}`"
                for option in options
                if option not in known
            ]
    assert not problems, f"{page_id(page)}:\n" + "\n".join(problems)


def test_istiolab_calls_are_found_in_code() -> None:
    text = (
        "Run `istiolab doctor` or `.venv/bin/istiolab up --dry-run`; the `istiolab` command.\n"
        "```bash\n"
        "kind load docker-image x --name istiolab\n"
        "istiolab validate a.yaml --known b\n"
        "istiolab exec --outside-mesh -- curl -s -o /dev/null http://productpage:9080/\n"
        "```\n"
        "```text\nistiolab nonsense here\n```\n"
        "- In a list:\n\n  ```text\n  istiolab nonsense\n  ```\n"
    )
    calls = [(line, call) for line, code in code_lines(text) for call in istiolab_calls(code)]
    assert calls == [
        (1, ("doctor", ["doctor"], [])),
        (1, ("up", ["up"], ["--dry-run"])),
        (4, ("validate", ["validate"], ["--known"])),
        (5, ("exec", ["exec"], ["--outside-mesh"])),  # curl's options are curl's
    ]
    assert {"doctor", "up", "down", "validate"} <= istiolab_commands()


# --- the steps of cluster-up.sh -----------------------------------------------------------------

STEP = re.compile(r"(?m)^\[\d+/\d+\] .+$")


def test_the_kind_page_shows_the_steps_cluster_up_prints() -> None:
    # Only versions.env decides the plan: no context, cluster name, port or dry-run setting of
    # the environment running the tests.
    unset = {"KUBE_CONTEXT", "DRY_RUN", "KIND_CLUSTER_NAME", "INGRESS_HOST_PORT"}
    env = {key: value for key, value in os.environ.items() if key not in unset}
    result = subprocess.run(
        ["bash", "scripts/cluster-up.sh", "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = STEP.findall(result.stdout)
    shown = STEP.findall(KIND_DOC.read_text(encoding="utf-8"))
    assert len(printed) == 9, result.stdout
    assert shown == printed
