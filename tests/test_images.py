"""The container images, checked without building them.

No Docker engine is needed: the Dockerfile is linted with hadolint and read as text, the lock file
is compared with pyproject.toml, and scripts/images.sh is run for real but with --dry-run, or with
a PATH on which `docker` is missing or is a stand-in that only records its arguments.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bookinfo.variants import VARIANTS, Variant
from istiolab import versions

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "bookinfo" / "Dockerfile"
DOCKERIGNORE = ROOT / "bookinfo" / "Dockerfile.dockerignore"
REQUIREMENTS = ROOT / "bookinfo" / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
IMAGES_SH = ROOT / "scripts" / "images.sh"

INTERNAL_STAGES = ("build", "runtime", "ratings-base")
TARGETS = [variant.target for variant in VARIANTS]
PROJECT = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
# The image names the manifests use, and so the defaults of scripts/images.sh.
IMAGE_PREFIX = versions.get("BOOKINFO_IMAGE_PREFIX")
IMAGE_TAG = versions.get("BOOKINFO_IMAGE_TAG")
PINNED_IMAGE = re.compile(r"[\w./-]+:\d+\.\d+\.\d+(-[\w.]+)*(@sha256:[0-9a-f]{64})?")
RESERVED_UID = 1337  # Istio's sidecar runs as 1337; its traffic is never redirected.


def venv_tool(name: str) -> str:
    """A tool installed by a dev dependency: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the dev extra: pip install -e '.[dev]'")
    return found


# --- reading the Dockerfile ------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def logical_lines(text: str) -> list[str]:
    """Instructions with continuations joined and comments dropped, as Docker reads them."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending.strip():
        lines.append(pending)
    return lines


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


STAGES = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
BY_NAME = {stage.name: stage for stage in STAGES if stage.name}


def chain(stage: Stage) -> list[Stage]:
    """The stage and the stages it is built on, base first."""
    stages = [stage]
    while stages[0].base in BY_NAME:
        stages.insert(0, BY_NAME[stages[0].base])
    return stages


def env_of(stages: list[Stage]) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in stages:
        for args in stage.all("ENV"):
            for word in shlex.split(args):
                key, sep, value = word.partition("=")
                assert sep, f"use the ENV key=value form, not {args!r}"
                env[key] = value
    return env


def variant_id(variant: Variant) -> str:
    return variant.target


# --- hadolint ----------------------------------------------------------------------------------


def hadolint(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # The repository's .hadolint.yaml if there is one (there is none: nothing needs configuring),
    # else an empty one; never a developer's ~/.config/hadolint.yaml or HADOLINT_* variables,
    # which could hide a finding.
    config = ROOT / ".hadolint.yaml"
    if not config.exists():
        config = tmp_path / "hadolint.yaml"
        config.write_text("ignored: []\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    return subprocess.run(
        [venv_tool("hadolint"), "--config", str(config), "--no-color", "--format", "json",
         "--failure-threshold", "style", str(path)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=60,
    )  # fmt: skip


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    result = hadolint(DOCKERFILE, tmp_path)
    findings = json.loads(result.stdout or "[]")
    report = [f"line {f['line']}: {f['code']} {f['message']}" for f in findings]
    assert findings == [], "\n".join(report)
    assert result.returncode == 0, result.stderr


def test_each_hadolint_ignore_is_needed(tmp_path: Path) -> None:
    """An ignore pragma must silence a finding that is really there, and nothing more."""
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines(keepends=True)
    pragmas = [i for i, line in enumerate(lines) if line.startswith("# hadolint ignore=")]
    for index in pragmas:
        codes = set(lines[index].split("=", 1)[1].strip().split(","))
        without = tmp_path / "Dockerfile"
        without.write_text("".join(lines[:index] + lines[index + 1 :]), encoding="utf-8")
        found = {f["code"] for f in json.loads(hadolint(without, tmp_path).stdout or "[]")}
        assert codes <= found, f"line {index + 1} ignores {codes - found}, which never fire"


# --- targets, environment, command -------------------------------------------------------------


def test_targets_are_exactly_the_variants() -> None:
    names = [stage.name for stage in STAGES if stage.name]
    assert len(names) == len(set(names)), "a stage name is used twice"
    targets = [name for name in names if name not in INTERNAL_STAGES]
    assert sorted(targets) == sorted(TARGETS)
    assert all(stage.name for stage in STAGES), "every stage is named"


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_target_env_is_the_variants_env(variant: Variant) -> None:
    stage = BY_NAME[variant.target]
    assert env_of([stage]) == variant.env
    # Nothing the target inherits may set (and so contradict) a variable a variant decides.
    decided = {key for v in VARIANTS for key in v.env}
    inherited = env_of(chain(stage)[:-1])
    assert not decided & inherited.keys()


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_target_serves_its_service_on_9080(variant: Variant) -> None:
    stages = chain(BY_NAME[variant.target])
    cmds = [json.loads(args) for stage in stages for args in stage.all("CMD")]
    assert cmds[-1] == [
        "python", "-m", "bookinfo", "serve", variant.service, "--host", "::", "--port", "9080",
    ]  # fmt: skip
    assert len(stages[-1].all("CMD")) == 1
    assert not any(stage.all("ENTRYPOINT") for stage in stages)
    assert "9080" in {port for stage in stages for port in " ".join(stage.all("EXPOSE")).split()}


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_target_runs_as_a_numeric_non_root_user(variant: Variant) -> None:
    users = [user for stage in chain(BY_NAME[variant.target]) for user in stage.all("USER")]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]} is not numeric; runAsNonRoot cannot verify a name"
    assert int(uid) not in (0, RESERVED_UID)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_ratings_images_have_curl_and_others_do_not(variant: Variant) -> None:
    runs = " ".join(run for stage in chain(BY_NAME[variant.target]) for run in stage.all("RUN"))
    installs_curl = re.search(r"apt-get install [^&;]*\bcurl\b", runs) is not None
    assert installs_curl == (variant.service == "ratings")


def test_base_images_are_pinned_to_a_full_version() -> None:
    external = {stage.base for stage in STAGES if stage.base not in BY_NAME}
    assert external
    for image in external:
        assert "latest" not in image
        assert PINNED_IMAGE.fullmatch(image), f"{image} is not pinned to a full version"
    # The venv's interpreter symlinks point into the base image: build and runtime must match.
    assert BY_NAME["build"].base == BY_NAME["runtime"].base


def test_build_installs_only_hash_checked_dependencies() -> None:
    installs = [run for run in BY_NAME["build"].all("RUN") if "pip install" in run]
    locked = [run for run in installs if "-r bookinfo/requirements.txt" in run]
    assert locked
    assert all("--require-hashes" in run for run in locked)
    # Every other install is the project itself, which must not pull in anything unpinned.
    assert all("--no-deps" in run for run in installs if run not in locked)
    assert BY_NAME["runtime"].all("COPY") == ["--from=build /opt/bookinfo /opt/bookinfo"]


def test_no_healthcheck_and_oci_labels() -> None:
    assert not any(stage.all("HEALTHCHECK") for stage in STAGES), "Kubernetes uses probes"
    labels = " ".join(BY_NAME["runtime"].all("LABEL"))
    for key in ("title", "description", "licenses", "version"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_keeps_out_the_repository_but_not_what_the_build_copies() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests", "docs", "benchmarks", ".bin", ".istiolab"} <= patterns
    assert not any(p.startswith("!") for p in patterns)
    for stage in STAGES:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            for source in args.split()[:-1]:
                parts = Path(source.rstrip("/")).parts
                prefixes = {"/".join(parts[: i + 1]) for i in range(len(parts))}
                assert not prefixes & patterns, f"COPY {source} is excluded by the dockerignore"


# --- the lock file -----------------------------------------------------------------------------


def parse_lock(text: str) -> dict[str, tuple[Version, list[str]]]:
    pins: dict[str, tuple[Version, list[str]]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        assert not requirement.startswith("-"), f"unexpected option in the lock file: {line}"
        name, sep, version = requirement.partition("==")
        assert sep, f"{requirement} is not pinned with =="
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=")]
        pins[canonicalize_name(name)] = (Version(version), hashes)
    return pins


LOCK_TEXT = REQUIREMENTS.read_text(encoding="utf-8")
PINS = parse_lock(LOCK_TEXT)


def read_requirements_in() -> list[str]:
    lines = (REQUIREMENTS.parent / "requirements.in").read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


BOOKINFO_REQUIREMENTS = read_requirements_in()


@pytest.mark.parametrize("spec", BOOKINFO_REQUIREMENTS)
def test_every_bookinfo_dependency_is_pinned_within_its_range(spec: str) -> None:
    requirement = Requirement(spec)
    name = canonicalize_name(requirement.name)
    assert name in PINS, f"{name} is missing from bookinfo/requirements.txt"
    version, _ = PINS[name]
    assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version}"


def test_bookinfo_dependencies_agree_with_pyproject() -> None:
    """The image's requirements.in and the installed project ask for the same ranges."""
    assert BOOKINFO_REQUIREMENTS
    assert set(BOOKINFO_REQUIREMENTS) <= set(PROJECT["dependencies"])


def test_every_pin_has_a_sha256_hash() -> None:
    assert PINS
    for name, (_, hashes) in PINS.items():
        assert hashes, f"{name} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_lock_holds_no_dev_tools_and_no_machine_paths() -> None:
    dev = {canonicalize_name(Requirement(s).name) for s in PROJECT["optional-dependencies"]["dev"]}
    assert not dev & PINS.keys()
    for word in LOCK_TEXT.split():
        assert not word.startswith(("/", "file:")), f"machine-specific {word!r} in the lock file"
    assert "pip-compile --generate-hashes" in LOCK_TEXT  # the header says how to regenerate it


def test_lock_is_closed_under_dependencies() -> None:
    """Each pinned package's own requirements are pinned too (checked where the installed
    version is the pinned one, since that is where its metadata is at hand)."""
    python313 = {"python_version": "3.13", "python_full_version": "3.13.9"}
    environments = [default_environment(), {**default_environment(), **python313}]
    checked = 0
    for name, (version, _) in PINS.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if Version(dist.version) != version:
            continue
        checked += 1
        for spec in dist.requires or []:
            requirement = Requirement(spec)
            needed = requirement.marker is None or any(
                requirement.marker.evaluate({**env, "extra": ""}) for env in environments
            )
            if needed:
                assert canonicalize_name(requirement.name) in PINS, f"{name} needs {spec}"
    assert checked, "no pinned package is installed here to check against"


# --- scripts/images.sh -------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    overridden = {"IMAGE_PREFIX", "IMAGE_TAG", "PLATFORMS"}
    env = {k: v for k, v in os.environ.items() if k not in overridden}
    env.update(extra)
    return env


def images_sh(
    *args: str, env: dict[str, str] | None = None, bash: str = "bash", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bash, str(IMAGES_SH), *args],
        capture_output=True, text=True, env=env if env is not None else clean_env(),
        cwd=cwd or ROOT, check=False, timeout=30,
    )  # fmt: skip


def plan(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    return [shlex.split(line[2:]) for line in lines if line.startswith("+ ")]


def option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def image(target: str) -> str:
    return f"{IMAGE_PREFIX}{target}:{IMAGE_TAG}"


def assert_plain_build(argv: list[str], target: str) -> None:
    assert argv[:2] == ["docker", "build"]
    assert option(argv, "-f") == "bookinfo/Dockerfile"
    assert option(argv, "--target") == target
    assert option(argv, "-t") == image(target)
    assert argv[-1] == "."


def test_dry_run_builds_every_target_once(tmp_path: Path) -> None:
    # Run from elsewhere: the script finds the repository root itself.
    result = images_sh("--dry-run", cwd=tmp_path)
    commands = plan(result)
    assert [option(argv, "--target") for argv in commands] == TARGETS
    for argv, target in zip(commands, TARGETS, strict=True):
        assert_plain_build(argv, target)
        assert "--push" not in argv
    last = result.stdout.splitlines()[-1]
    assert last.startswith("Dry run, nothing was built: would build 12 images")
    assert result.stderr == ""


def test_dry_run_kind_cluster_loads_each_image() -> None:
    commands = plan(images_sh("--dry-run", "--kind-cluster", "c1"))
    assert len(commands) == 2 * len(TARGETS)
    pairs = zip(commands[::2], commands[1::2], strict=True)
    for (build, load), target in zip(pairs, TARGETS, strict=True):
        assert_plain_build(build, target)
        assert load == ["kind", "load", "docker-image", image(target), "--name", "c1"]


def test_dry_run_multi_arch_uses_buildx_and_warns_without_push() -> None:
    result = images_sh("--dry-run", "--platforms", "linux/amd64,linux/arm64")
    commands = plan(result)
    assert len(commands) == len(TARGETS)
    for argv, target in zip(commands, TARGETS, strict=True):
        assert argv[:3] == ["docker", "buildx", "build"]
        assert option(argv, "--platform") == "linux/amd64,linux/arm64"
        assert option(argv, "--target") == target
        assert option(argv, "-t") == image(target)
        assert "--load" not in argv  # a multi-platform image cannot be loaded into docker
        assert "--push" not in argv
    assert "cannot be --load-ed" in result.stderr


def test_dry_run_multi_arch_push_from_the_environment() -> None:
    env = clean_env(PLATFORMS="linux/amd64,linux/arm64", IMAGE_PREFIX="ghcr.io/me/bi-")
    commands = plan(images_sh("--dry-run", "--push", "ratings-v1", env=env))
    assert commands == [
        ["docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64",
         "-f", "bookinfo/Dockerfile", "--target", "ratings-v1",
         "--build-arg", f"IMAGE_VERSION={IMAGE_TAG}", "-t", f"ghcr.io/me/bi-ratings-v1:{IMAGE_TAG}",
         "--push", "."],
    ]  # fmt: skip


def test_dry_run_one_platform_loads_into_docker() -> None:
    commands = plan(images_sh("--dry-run", "--platforms", "linux/arm64", "details-v2"))
    assert len(commands) == 1
    assert commands[0][:3] == ["docker", "buildx", "build"]
    assert "--load" in commands[0]


def test_dry_run_single_target_with_tag_and_push() -> None:
    commands = plan(images_sh("--dry-run", "--push", "reviews-v3", env=clean_env(IMAGE_TAG="t1")))
    build, push = commands
    assert build[:2] == ["docker", "build"]
    assert option(build, "--target") == "reviews-v3"
    assert option(build, "-t") == f"{IMAGE_PREFIX}reviews-v3:t1"
    assert push == ["docker", "push", f"{IMAGE_PREFIX}reviews-v3:t1"]


def test_unknown_target_is_a_usage_error() -> None:
    result = images_sh("--dry-run", "reviews-v9")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown target 'reviews-v9'; the targets are: " + " ".join(TARGETS) in result.stderr


@pytest.mark.parametrize(
    "args",
    [("--bogus",), ("--kind-cluster",), ("--platforms", "a,b", "--kind-cluster", "c1")],
    ids=["unknown-option", "missing-value", "kind-with-multi-arch"],
)
def test_bad_command_lines_exit_2(args: tuple[str, ...]) -> None:
    result = images_sh("--dry-run", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "--help" in result.stderr


def test_list_prints_the_targets() -> None:
    result = images_sh("--list")
    assert result.returncode == 0
    assert result.stdout.splitlines() == TARGETS


def images_sh_copy(root: Path, pins: str) -> Path:
    """scripts/images.sh, the library it sources and the Dockerfile in a bare tree of their own,
    with this versions.env."""
    (root / "scripts" / "lib").mkdir(parents=True)
    (root / "bookinfo").mkdir()
    shutil.copy2(IMAGES_SH, root / "scripts" / "images.sh")
    shutil.copy2(IMAGES_SH.parent / "lib" / "commands.sh", root / "scripts" / "lib" / "commands.sh")
    shutil.copy2(DOCKERFILE, root / "bookinfo" / "Dockerfile")
    (root / "versions.env").write_text(pins, encoding="utf-8")
    return root / "scripts" / "images.sh"


def test_default_names_come_from_versions_env(tmp_path: Path) -> None:
    script = images_sh_copy(
        tmp_path, "BOOKINFO_IMAGE_PREFIX=example.org/bi-\nBOOKINFO_IMAGE_TAG=9.8.7\n"
    )
    result = subprocess.run(
        ["bash", str(script), "--dry-run", "details-v1"],
        capture_output=True, text=True, env=clean_env(), check=False, timeout=30,
    )  # fmt: skip
    (build,) = plan(result)
    assert option(build, "-t") == "example.org/bi-details-v1:9.8.7"
    assert option(build, "--build-arg") == "IMAGE_VERSION=9.8.7"


@pytest.mark.parametrize("missing", ["BOOKINFO_IMAGE_PREFIX", "BOOKINFO_IMAGE_TAG"])
def test_a_missing_pin_is_named(tmp_path: Path, missing: str) -> None:
    pins = "".join(
        f"{key}=x\n" for key in ("BOOKINFO_IMAGE_PREFIX", "BOOKINFO_IMAGE_TAG") if key != missing
    )
    script = images_sh_copy(tmp_path, pins)
    result = subprocess.run(
        ["bash", str(script), "--dry-run"],
        capture_output=True, text=True, env=clean_env(), check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"images.sh: versions.env has no {missing}." in result.stderr


def test_images_sh_never_sleeps() -> None:
    assert not re.search(r"\bsleep\b", IMAGES_SH.read_text(encoding="utf-8"))


# --- scripts/images.sh against a missing or stand-in docker ------------------------------------


@pytest.fixture
def bare_path(tmp_path: Path) -> Path:
    """A PATH directory holding only bash: no docker, kind, or coreutils."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    bash = shutil.which("bash")
    assert bash
    (bin_dir / "bash").symlink_to(bash)
    return bin_dir


def stand_in(bin_dir: Path, name: str, body: str) -> Path:
    """A fake `name` that appends its arguments to name.log and then runs `body`."""
    log = bin_dir.parent / f"{name}.log"
    script = bin_dir / name
    script.write_text(
        f"#!{bin_dir / 'bash'}\nprintf '%s\\n' \"$*\" >>{shlex.quote(str(log))}\n{body}\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return log


def run_bare(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir.parent)}
    return images_sh(*args, env=env, bash=str(bin_dir / "bash"))


def test_without_docker_it_says_how_to_fix_it(bare_path: Path) -> None:
    result = run_bare(bare_path, "reviews-v3")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "images.sh: docker is not installed or not on PATH.\n"
        "fix: install Docker Engine (https://docs.docker.com/engine/install/) or Docker Desktop"
        " and put 'docker' on PATH; 'scripts/images.sh --dry-run' prints the commands without it.\n"
    )


def test_dry_run_needs_nothing_but_bash(bare_path: Path) -> None:
    commands = plan(run_bare(bare_path, "--dry-run", "ratings-v-faulty"))
    assert len(commands) == 1
    assert_plain_build(commands[0], "ratings-v-faulty")


def test_unreachable_daemon_says_how_to_fix_it(bare_path: Path) -> None:
    log = stand_in(bare_path, "docker", 'if [[ "$1" == info ]]; then exit 1; fi')
    result = run_bare(bare_path, "reviews-v3")
    assert result.returncode == 1
    assert result.stderr == (
        "images.sh: the Docker daemon is not reachable ('docker info' failed).\n"
        "fix: start it ('sudo systemctl start docker', or open Docker Desktop), or point"
        " DOCKER_HOST at a running one, then run this again.\n"
    )
    assert log.read_text(encoding="utf-8") == "info\n"  # nothing was built


def test_a_real_run_runs_the_dry_run_plan(bare_path: Path) -> None:
    docker_log = stand_in(bare_path, "docker", "exit 0")
    kind_log = stand_in(bare_path, "kind", 'if [[ "$1" == get ]]; then printf "c0\\nc1\\n"; fi')
    args = ("--kind-cluster", "c1", "reviews-v2", "ratings-v1")
    planned = plan(images_sh("--dry-run", *args))
    result = run_bare(bare_path, *args)
    assert result.returncode == 0, result.stderr
    ran = docker_log.read_text(encoding="utf-8").splitlines()
    ran += kind_log.read_text(encoding="utf-8").splitlines()
    expected = ["info"] + [" ".join(argv[1:]) for argv in planned if argv[0] == "docker"]
    expected += ["get clusters"] + [" ".join(argv[1:]) for argv in planned if argv[0] == "kind"]
    assert ran == expected
    assert result.stdout.splitlines() == [
        f"Built 2 images {IMAGE_PREFIX}<target>:{IMAGE_TAG}, loaded into kind cluster"
        " c1: reviews-v2 ratings-v1"
    ]
    assert "+ docker build -f bookinfo/Dockerfile --target reviews-v2" in result.stderr


def test_missing_kind_cluster_says_how_to_fix_it(bare_path: Path) -> None:
    docker_log = stand_in(bare_path, "docker", "exit 0")
    stand_in(bare_path, "kind", 'if [[ "$1" == get ]]; then echo other; fi')
    result = run_bare(bare_path, "--kind-cluster", "c1", "reviews-v2")
    assert result.returncode == 1
    assert result.stderr == (
        "images.sh: there is no kind cluster named 'c1'.\n"
        "fix: create it with 'kind create cluster --name c1', or name an existing one"
        " (kind get clusters).\n"
    )
    assert docker_log.read_text(encoding="utf-8") == "info\n"
