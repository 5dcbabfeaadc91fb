"""scripts/cluster-up.sh and scripts/cluster-down.sh, run for real as bash processes.

No kind cluster can exist here, so nothing in these tests needs Docker, kind or the network: the
scripts run with --dry-run, which prints the plan (each command that would change something, as
"+ command") while the read-only checks still run, or with --check, which only checks. Each runs
in a copy of the files it uses (so a .bin/ of the real checkout cannot change its plan), with a
PATH holding bash and stand-ins for uname, docker, kubectl, kind and the other tools: small bash
scripts that answer as the real ones would on the machine the test describes, and log their
arguments. The inotify limits are read from a stand-in /proc/sys (ISTIOLAB_PROC_SYS), and a busy
host port is a real listening socket.
"""

from __future__ import annotations

import hashlib
import io
import re
import shlex
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from istiolab import versions

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("cluster-up.sh", "cluster-down.sh")
COPIED = (
    "scripts/cluster-up.sh",
    "scripts/cluster-down.sh",
    "scripts/lib/cluster.sh",
    "scripts/lib/commands.sh",
    "scripts/images.sh",
    "versions.env",
    "bookinfo/Dockerfile",
)
PINS = versions.load(ROOT / "versions.env")
KIND_VERSION = PINS["KIND_VERSION"]
ISTIO_VERSION = PINS["ISTIO_VERSION"]
NODE_IMAGE = PINS["KIND_NODE_IMAGE"]
NODE_VERSION = NODE_IMAGE.split(":")[1].split("@")[0]  # kindest/node:v1.36.1@sha256:... -> v1.36.1
GATEWAY_API_VERSION = PINS.get("GATEWAY_API_VERSION")
COURSE_CONTEXT = f"kind-{PINS['KIND_CLUSTER_NAME']}"
KIND_DIR = f".bin/kind-{KIND_VERSION}"
ISTIO_DIR = f".bin/istio-{ISTIO_VERSION}"
ISTIOCTL = f"{ISTIO_DIR}/bin/istioctl"
ADDONS = ("prometheus", "jaeger", "kiali", "grafana")
CHECK_IDS = [
    "os", "arch", "docker", "docker-daemon", "docker-memory", "kubectl", "curl", "tar", "sha256",
    "git", "port", "inotify-watches", "inotify-instances",
]  # fmt: skip
GIB = 1024**3

# What `kubectl kustomize manifests/stages/00-bookinfo` prints, in its key order, cut short: the
# stand-in kubectl answers with it. The ConfigMap's data holds a `name:` that is not a resource's.
STAGE_YAML = """\
apiVersion: v1
kind: ConfigMap
data:
  name: not-a-deployment
metadata:
  name: settings
  namespace: default
---
apiVersion: v1
kind: Service
metadata:
  labels:
    app: productpage
  name: productpage
  namespace: default
spec:
  ports:
  - name: http
    port: 9080
---
"""
DEPLOYMENTS = (
    "details-v1",
    "productpage-v1",
    "ratings-v1",
    "reviews-v1",
    "reviews-v2",
    "reviews-v3",
)


def deployment_yaml(name: str, namespace: str = "default") -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels:\n    app: {name}\n"
        f"  name: {name}\n  namespace: {namespace}\nspec:\n  template:\n    spec:\n"
        f"      containers:\n      - name: {name}\n---\n"
    )


# --- the machine the test describes ------------------------------------------------------------


@dataclass
class Machine:
    """A stand-in machine: what uname, docker, kubectl and kind say, and the inotify limits."""

    system: str = "Linux"
    cpu: str = "x86_64"
    docker: str | None = "ok"  # None: not installed; "ok", "down", "denied"
    docker_memory: int = 8 * GIB
    kubectl: str | None = "v1.36.0"  # kubectl's client version; None: not installed
    contexts: tuple[str, ...] = ()
    reachable: bool = True
    gateway_api: str = ""  # the bundle version of the Gateway API CRDs in the cluster
    stage_yaml: str = STAGE_YAML + "".join(deployment_yaml(name) for name in DEPLOYMENTS)
    kind_clusters: tuple[str, ...] | None = None  # None: no kind on PATH
    port_bindings: str = ""  # docker inspect of the node: "30080/tcp=8080 6443/tcp=4321 "
    tools: tuple[str, ...] = ("curl", "tar", "git")
    inotify: tuple[str, str] | None = ("524288", "512")
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sandbox:
    """A copy of the scripts' files, a PATH of stand-ins, and a way to run the scripts there."""

    root: Path
    bin: Path
    logs: Path
    env: dict[str, str]

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "bash"), str(self.root / "scripts" / script), *args],
            capture_output=True, text=True, env={**self.env, **env}, cwd=self.root.parent,
            check=False, timeout=60,
        )  # fmt: skip

    def log(self, tool: str) -> list[str]:
        path = self.logs / f"{tool}.log"
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def set_pin(self, key: str, value: str | None) -> None:
        """Change one line of the copy's versions.env; None removes it."""
        path = self.root / "versions.env"
        lines = [
            ln
            for ln in path.read_text(encoding="utf-8").splitlines()
            if not ln.startswith(f"{key}=")
        ]
        if value is not None:
            lines.append(f"{key}={value}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def stand_in(bin_dir: Path, logs: Path, name: str, body: str) -> None:
    script = bin_dir / name
    log = shlex.quote(str(logs / f"{name}.log"))
    script.write_text(
        f"#!{bin_dir / 'bash'}\nprintf '%s\\n' \"$*\" >>{log}\n{body}\n", encoding="utf-8"
    )
    script.chmod(0o755)


def link(bin_dir: Path, name: str, *candidates: str) -> None:
    for candidate in (name, *candidates):
        found = shutil.which(candidate)
        if found:
            (bin_dir / candidate).symlink_to(found)
            return
    pytest.skip(f"needs {name} on this machine")


def build_sandbox(tmp_path: Path, machine: Machine) -> Sandbox:
    root = tmp_path / "repo"
    for relative in COPIED:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, root / relative)
    shutil.copytree(ROOT / "manifests", root / "manifests")
    bin_dir, logs = tmp_path / "bin", tmp_path / "logs"
    bin_dir.mkdir()
    logs.mkdir()
    link(bin_dir, "bash")
    link(bin_dir, "cat")
    link(bin_dir, "sha256sum", "shasum")
    stand_in(
        bin_dir,
        logs,
        "uname",
        f'case "$1" in -s) echo {machine.system} ;; -m) echo {machine.cpu} ;; esac',
    )
    for tool in machine.tools:
        stand_in(bin_dir, logs, tool, "exit 0")
    if machine.docker is not None:
        info = {
            "ok": f"echo '27.3.1 {machine.docker_memory}'",
            "down": "echo ' 0'; echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.'"
            " >&2; exit 1",
            "denied": "echo 'permission denied while trying to connect to the Docker daemon socket'"
            " >&2; exit 1",
        }[machine.docker]
        node = f"{PINS['KIND_CLUSTER_NAME']}-control-plane"
        ps = (
            f"echo {node}"
            if machine.kind_clusters and PINS["KIND_CLUSTER_NAME"] in machine.kind_clusters
            else ":"
        )
        inspect = (
            f"printf '%s' {shlex.quote(machine.port_bindings)}"
            if machine.port_bindings
            else "exit 1"
        )
        stand_in(
            bin_dir,
            logs,
            "docker",
            f'case "$1" in info) {info} ;; ps) {ps} ;; inspect) {inspect} ;; esac',
        )
    if machine.kubectl is not None:
        stage = tmp_path / "stage.yaml"
        stage.write_text(machine.stage_yaml, encoding="utf-8")
        contexts = " ".join(shlex.quote(c) for c in machine.contexts) or "''"
        version = f'{{"clientVersion": {{"gitVersion": "{machine.kubectl}"}}}}'
        readyz = "echo ok" if machine.reachable else "echo 'connection refused' >&2; exit 1"
        stand_in(
            bin_dir,
            logs,
            "kubectl",
            f"""
case " $* " in
  *" version --client "*) echo {shlex.quote(version)} ;;
  *" config get-contexts "*) for c in {contexts}; do [[ -n "$c" ]] && echo "$c"; done ;;
  *" kustomize "*) cat {shlex.quote(str(stage))} ;;
  *" get crd gateways.gateway.networking.k8s.io "*) printf %s {shlex.quote(machine.gateway_api)} ;;
  *" get --raw /readyz "*) {readyz} ;;
  *" -f - "*) cat >/dev/null ;;
esac""",
        )
    if machine.kind_clusters is not None:
        names = "".join(f"{name}\\n" for name in machine.kind_clusters)
        stand_in(bin_dir, logs, "kind", f'if [[ "$1" == get ]]; then printf "{names}"; fi')
    proc_sys = tmp_path / "proc-sys"
    if machine.inotify is not None:
        (proc_sys / "fs" / "inotify").mkdir(parents=True)
        (proc_sys / "fs" / "inotify" / "max_user_watches").write_text(machine.inotify[0] + "\n")
        (proc_sys / "fs" / "inotify" / "max_user_instances").write_text(machine.inotify[1] + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": str(bin_dir),
        "HOME": str(home),
        "KUBECONFIG": str(home / "no-kubeconfig"),
        "ISTIOLAB_PROC_SYS": str(proc_sys),
        "INGRESS_HOST_PORT": str(free_port()),
        "LANG": "C.UTF-8",
        **machine.env,
    }
    return Sandbox(root=root, bin=bin_dir, logs=logs, env=env)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A ready machine: everything installed, Docker running, no cluster yet."""
    yield build_sandbox(tmp_path, Machine())


# --- reading what the scripts print -------------------------------------------------------------


def plan(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The dry run's commands, one per "+ " line, split as the shell would."""
    assert result.returncode == 0, result.stderr
    return [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]


def steps(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", line)]


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str, str]]:
    """--check --format=plain: {check: (status, detail, fix)}."""
    found: dict[str, tuple[str, str, str]] = {}
    for line in result.stdout.splitlines():
        status, check, detail, fix = line.split("\t")
        found[check] = (status, detail, fix)
    return found


def kind_url(asset: str) -> str:
    return f"https://github.com/kubernetes-sigs/kind/releases/download/{KIND_VERSION}/{asset}"


def istio_url(archive: str) -> str:
    return f"https://github.com/istio/istio/releases/download/{ISTIO_VERSION}/{archive}"


def download_plan(
    pins: dict[str, str], key: str = "LINUX_AMD64", platform: str = "linux-amd64"
) -> list[list[str]]:
    """The commands that fetch kind and Istio into an empty .bin/."""
    istio_platform = {"darwin-amd64": "osx", "darwin-arm64": "osx-arm64"}.get(platform, platform)
    archive = f"istio-{ISTIO_VERSION}-{istio_platform}.tar.gz"
    commands = [["mkdir", "-p", KIND_DIR]]
    if not pins.get(f"KIND_SHA256_{key}"):
        commands.append(["curl", "-fsSL", "--retry", "3", "-o", f"{KIND_DIR}/kind.sha256sum",
                         kind_url(f"kind-{platform}.sha256sum")])  # fmt: skip
    commands += [
        ["curl", "-fL", "--retry", "3", "--progress-bar", "-o", f"{KIND_DIR}/kind.download",
         kind_url(f"kind-{platform}")],
        ["mv", f"{KIND_DIR}/kind.download", f"{KIND_DIR}/kind"],
        ["chmod", "+x", f"{KIND_DIR}/kind"],
        ["mkdir", "-p", ".bin"],
    ]  # fmt: skip
    istio_sha = pins.get(f"ISTIO_SHA256_{key}")
    if not istio_sha:
        commands.append(["curl", "-fsSL", "--retry", "3", "-o", f".bin/{archive}.sha256",
                         istio_url(f"{archive}.sha256")])  # fmt: skip
        istio_sha = f"<the SHA-256 in .bin/{archive}.sha256>"
    commands += [
        ["curl", "-fL", "--retry", "3", "--progress-bar", "-o", f".bin/{archive}.download",
         istio_url(archive)],
        ["mv", f".bin/{archive}.download", f".bin/{archive}"],
        ["rm", "-rf", ISTIO_DIR],
        ["tar", "-xzf", f".bin/{archive}", "-C", ".bin"],
        ["printf", "%s\\n", f"{istio_sha}  {archive}",
         ">", f"{ISTIO_DIR}/.istiolab-archive-sha256"],
    ]  # fmt: skip
    return commands


def gateway_api_plan(context: str) -> list[list[str]]:
    if GATEWAY_API_VERSION is None:
        return []
    return [
        ["kubectl", "kustomize",
         f"github.com/kubernetes-sigs/gateway-api/config/crd?ref={GATEWAY_API_VERSION}",
         "|", "kubectl", "--context", context, "apply", "-f", "-"],
        ["kubectl", "--context", context, "wait", "--for=condition=Established", "--timeout=60s",
         "crd/gateways.gateway.networking.k8s.io", "crd/httproutes.gateway.networking.k8s.io"],
    ]  # fmt: skip


def mesh_plan(context: str) -> list[list[str]]:
    addons = [arg for addon in ADDONS for arg in ("-f", f"{ISTIO_DIR}/samples/addons/{addon}.yaml")]
    return [
        *gateway_api_plan(context),
        [ISTIOCTL, "install", "--context", context, "-y",
         "-f", "manifests/istio/istio-operator.yaml"],
        ["kubectl", "--context", context, "apply", "-f", "manifests/istio/telemetry.yaml"],
        ["kubectl", "--context", context, "apply", *addons],
        ["kubectl", "--context", context, "-n", "istio-system", "wait", "--for=condition=Available",
         "deployment", "--all", "--timeout=300s"],
    ]  # fmt: skip


def bookinfo_plan(context: str) -> list[list[str]]:
    return [
        ["kubectl", "--context", context, "apply", "-k", "manifests/stages/00-bookinfo"],
        ["kubectl", "--context", context, "-n", "default", "wait", "--for=condition=Available",
         "--timeout=300s", *(f"deployment/{name}" for name in DEPLOYMENTS)],
    ]  # fmt: skip


def create_plan(name: str = PINS["KIND_CLUSTER_NAME"]) -> list[str]:
    return [f"{KIND_DIR}/kind", "create", "cluster", "--name", name, "--image", NODE_IMAGE,
            "--config", "manifests/kind/cluster.yaml", "--wait", "120s"]  # fmt: skip


def assert_every_cluster_command_names(commands: list[list[str]], context: str) -> None:
    for argv in commands:
        for part in " ".join(argv).split(" | "):
            words = part.split()
            if words[0] == "kubectl" and words[1] == "kustomize":
                continue  # builds YAML locally, touches no cluster
            if words[0] == "kubectl" or words[0].endswith("/istioctl"):
                assert words[words.index("--context") + 1] == context, argv


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_usage(sandbox: Sandbox, script: str) -> None:
    result = sandbox.run(script, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"Usage: scripts/{script} [OPTIONS]\n")
    assert "--dry-run" in result.stdout
    assert "--allow-other-context" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_unknown_option_prints_the_usage_and_exits_2(sandbox: Sandbox, script: str) -> None:
    result = sandbox.run(script, "--dry-run", "--bogus")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"{script}: unknown option '--bogus'\n")
    assert f"Usage: scripts/{script} [OPTIONS]" in result.stderr


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("cluster-up.sh", ("--context",), "--context needs the name of a kubectl context"),
        ("cluster-up.sh", ("--context=",), "--context needs the name of a kubectl context"),
        (
            "cluster-up.sh",
            ("--check", "--format", "xml"),
            "--format must be human or plain, not 'xml'",
        ),
        ("cluster-down.sh", ("--context",), "--context needs the name of a kubectl context"),
    ],
)
def test_bad_option_values_exit_2(
    sandbox: Sandbox, script: str, args: tuple[str, ...], message: str
) -> None:
    result = sandbox.run(script, "--dry-run", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{script}: {message}\n" in result.stderr
    assert f"Run 'scripts/{script} --help' for the options." in result.stderr


def test_dry_run_from_the_environment(sandbox: Sandbox) -> None:
    assert plan(sandbox.run("cluster-up.sh", DRY_RUN="1")) == plan(
        sandbox.run("cluster-up.sh", "--dry-run")
    )
    result = sandbox.run("cluster-up.sh", DRY_RUN="maybe")
    assert result.returncode == 2
    assert "DRY_RUN must be 1 or 0, not 'maybe'" in result.stderr


# --- cluster-up.sh: the plan --------------------------------------------------------------------


def test_dry_run_plans_every_step_in_order(sandbox: Sandbox, tmp_path: Path) -> None:
    result = sandbox.run("cluster-up.sh", "--dry-run")
    commands = plan(result)
    nested = [line.strip() for line in result.stdout.splitlines() if line.startswith("    + ")]
    assert commands == [
        *download_plan(PINS),
        create_plan(),
        *mesh_plan(COURSE_CONTEXT),
        ["scripts/images.sh", "--kind-cluster", PINS["KIND_CLUSTER_NAME"]],
        *bookinfo_plan(COURSE_CONTEXT),
    ]
    assert_every_cluster_command_names(commands, COURSE_CONTEXT)
    # What images.sh would do, shown under its line: the image names the manifests use.
    prefix, tag = PINS["BOOKINFO_IMAGE_PREFIX"], PINS["BOOKINFO_IMAGE_TAG"]
    assert (
        "+ docker build -f bookinfo/Dockerfile --target productpage-v1"
        f" --build-arg IMAGE_VERSION={tag} -t {prefix}productpage-v1:{tag} ."
    ) in nested
    assert (
        f"+ kind load docker-image {prefix}reviews-v3:{tag} --name {PINS['KIND_CLUSTER_NAME']}"
        in nested
    )
    # The pinned SHA-256 the kind download must have.
    kind_sha = PINS.get("KIND_SHA256_LINUX_AMD64")
    if kind_sha:
        assert f"    then check that its SHA-256 is {kind_sha}" in result.stdout.splitlines()
    assert [line.split("] ")[0] + "]" for line in steps(result)] == [
        f"[{n}/9]" for n in range(1, 10)
    ]
    assert f"[6/9] Installing Istio {ISTIO_VERSION}" in steps(result)
    assert result.stdout.splitlines()[-1] == (
        "  Bookinfo is running. After the gateway lab it will be at"
        f" http://localhost:{sandbox.env['INGRESS_HOST_PORT']}/productpage; until then:"
        f" kubectl --context {COURSE_CONTEXT} port-forward svc/productpage 9080:9080"
    )
    # The plan names paths inside the repository only, so it reads the same on every machine.
    assert not [
        line for line in result.stdout.splitlines() if "+ " in line and str(tmp_path) in line
    ]
    assert sandbox.log("curl") == []  # a dry run downloads nothing
    assert not (sandbox.root / ".bin").exists()


def test_a_real_run_ends_by_saying_where_bookinfo_is() -> None:
    text = (ROOT / "scripts" / "cluster-up.sh").read_text(encoding="utf-8")
    assert (
        'where="Bookinfo is running. After the gateway lab it will be at'
        " http://localhost:$INGRESS_HOST_PORT/productpage; until then:"
        ' kubectl --context $CONTEXT$namespace port-forward svc/productpage 9080:9080"'
    ) in text


def test_an_existing_cluster_is_kept(tmp_path: Path) -> None:
    bindings = f"{PINS['INGRESS_NODE_PORT']}/tcp=8080 6443/tcp=40001 "
    machine = Machine(
        kind_clusters=("other", PINS["KIND_CLUSTER_NAME"]),
        port_bindings=bindings,
        env={"INGRESS_HOST_PORT": "8080"},
    )
    sandbox = build_sandbox(tmp_path, machine)
    result = sandbox.run("cluster-up.sh", "--dry-run")
    commands = plan(result)
    assert not any("create" in argv for argv in commands)
    assert (
        f"    the kind cluster {PINS['KIND_CLUSTER_NAME']} already exists: keeping it"
        in result.stdout
    )
    assert "does not publish" not in result.stderr
    assert "get clusters" in sandbox.log("kind")


def test_an_existing_cluster_without_the_port_mapping_is_reported(tmp_path: Path) -> None:
    machine = Machine(kind_clusters=(PINS["KIND_CLUSTER_NAME"],), port_bindings="6443/tcp=40001 ")
    result = build_sandbox(tmp_path, machine).run("cluster-up.sh", "--dry-run")
    assert result.returncode == 0
    assert f"does not publish NodePort {PINS['INGRESS_NODE_PORT']} on localhost:" in result.stderr
    assert "scripts/cluster-down.sh && scripts/cluster-up.sh" in result.stderr


@pytest.mark.skipif(
    GATEWAY_API_VERSION is None, reason="versions.env has no GATEWAY_API_VERSION yet"
)
def test_gateway_api_crds_at_the_pinned_version_are_left_alone(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(gateway_api=str(GATEWAY_API_VERSION)))
    result = sandbox.run("cluster-up.sh", "--dry-run")
    assert not any("kustomize" in argv for argv in plan(result))
    assert f"    already installed at {GATEWAY_API_VERSION}" in result.stdout


@pytest.mark.skipif(
    GATEWAY_API_VERSION is None, reason="versions.env has no GATEWAY_API_VERSION yet"
)
def test_other_gateway_api_crds_are_replaced_only_on_the_course_cluster(tmp_path: Path) -> None:
    machine = Machine(gateway_api="v0.9.0", contexts=("lab",))
    sandbox = build_sandbox(tmp_path, machine)
    assert gateway_api_plan(COURSE_CONTEXT)[0] in plan(sandbox.run("cluster-up.sh", "--dry-run"))
    result = sandbox.run("cluster-up.sh", "--dry-run", "--context", "lab", "--allow-other-context")
    assert not any("kustomize" in argv for argv in plan(result))
    assert "has the Gateway API CRDs v0.9.0" in result.stderr


def test_skip_images_leaves_the_build_out(sandbox: Sandbox) -> None:
    result = sandbox.run("cluster-up.sh", "--dry-run", "--skip-images")
    assert not any(argv[0] == "scripts/images.sh" for argv in plan(result))
    assert steps(result)[-1] == "[8/8] Deploying Bookinfo (stage 00: no mesh yet)"


def test_waits_for_the_deployments_of_the_stage_in_their_namespace(tmp_path: Path) -> None:
    yaml = (
        STAGE_YAML
        + deployment_yaml("productpage-v1", "shop")
        + deployment_yaml("details-v1", "shop")
    )
    result = build_sandbox(tmp_path, Machine(stage_yaml=yaml)).run("cluster-up.sh", "--dry-run")
    assert plan(result)[-1] == [
        "kubectl", "--context", COURSE_CONTEXT, "-n", "shop", "wait", "--for=condition=Available",
        "--timeout=300s", "deployment/productpage-v1", "deployment/details-v1",
    ]  # fmt: skip
    assert result.stdout.splitlines()[-1].endswith(
        f"kubectl --context {COURSE_CONTEXT} -n shop port-forward svc/productpage 9080:9080"
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl to build the stage")
def test_waits_for_every_deployment_of_the_real_stage(tmp_path: Path) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests/stages/00-bookinfo")],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    # kustomize writes each resource's keys sorted: kind, then metadata, whose name follows its
    # labels (indented deeper).
    names = re.findall(r"^kind: Deployment\nmetadata:\n(?:  .*\n)*?  name: (\S+)", built, re.M)
    assert names, "the stage has no Deployment"
    result = build_sandbox(tmp_path, Machine(stage_yaml=built)).run("cluster-up.sh", "--dry-run")
    wait = plan(result)[-1]
    assert wait[:8] == ["kubectl", "--context", COURSE_CONTEXT, "-n", "default", "wait",
                        "--for=condition=Available", "--timeout=300s"]  # fmt: skip
    assert sorted(wait[8:]) == sorted(f"deployment/{name}" for name in names)


def test_a_custom_cluster_name_is_used_throughout(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(env={"KIND_CLUSTER_NAME": "demo"}))
    commands = plan(sandbox.run("cluster-up.sh", "--dry-run"))
    assert create_plan("demo") in commands
    assert ["scripts/images.sh", "--kind-cluster", "demo"] in commands
    assert_every_cluster_command_names(commands, "kind-demo")


def test_the_environment_cannot_change_a_pinned_version(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "cluster-up.sh", "--dry-run", ISTIO_VERSION="1.99.0", KIND_VERSION="v9.9.9"
    )
    assert plan(result)[: len(download_plan(PINS))] == download_plan(PINS)
    assert "note: ignoring ISTIO_VERSION=1.99.0 from the environment" in result.stderr
    assert "note: ignoring KIND_VERSION=v9.9.9 from the environment" in result.stderr


def test_a_host_port_the_kind_config_does_not_publish_is_reported(sandbox: Sandbox) -> None:
    config = (sandbox.root / "manifests/kind/cluster.yaml").read_text(encoding="utf-8")
    published = re.search(r"^\s*hostPort:\s*(\d+)", config, re.M)
    assert published is not None
    result = sandbox.run("cluster-up.sh", "--dry-run")  # INGRESS_HOST_PORT is a random free port
    assert (
        f"INGRESS_HOST_PORT is {sandbox.env['INGRESS_HOST_PORT']} but manifests/kind/cluster.yaml"
        f" publishes host port {published.group(1)}; a real run would stop here." in result.stderr
    )
    quiet = sandbox.run("cluster-up.sh", "--dry-run", INGRESS_HOST_PORT=published.group(1))
    assert "publishes host port" not in quiet.stderr


# --- cluster-up.sh: downloads -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "cpu", "key", "platform"),
    [
        ("Linux", "x86_64", "LINUX_AMD64", "linux-amd64"),
        ("Linux", "aarch64", "LINUX_ARM64", "linux-arm64"),
        ("Darwin", "x86_64", "DARWIN_AMD64", "darwin-amd64"),
        ("Darwin", "arm64", "DARWIN_ARM64", "darwin-arm64"),
    ],
)
def test_downloads_match_the_platform(
    tmp_path: Path, system: str, cpu: str, key: str, platform: str
) -> None:
    result = build_sandbox(tmp_path, Machine(system=system, cpu=cpu)).run(
        "cluster-up.sh", "--dry-run"
    )
    assert plan(result)[: len(download_plan(PINS, key, platform))] == download_plan(
        PINS, key, platform
    )
    for tool in ("KIND", "ISTIO"):
        pinned = PINS.get(f"{tool}_SHA256_{key}")
        if pinned:
            assert f"    then check that its SHA-256 is {pinned}" in result.stdout.splitlines()
        else:
            assert f"versions.env has no {tool}_SHA256_{key}." in result.stderr


def test_an_unpinned_download_is_checked_against_the_publisher_and_warned_about(
    sandbox: Sandbox,
) -> None:
    sandbox.set_pin("KIND_SHA256_LINUX_AMD64", None)
    sandbox.set_pin("ISTIO_SHA256_LINUX_AMD64", None)
    result = sandbox.run("cluster-up.sh", "--dry-run")
    commands = plan(result)
    sums = [
        "curl",
        "-fsSL",
        "--retry",
        "3",
        "-o",
        f"{KIND_DIR}/kind.sha256sum",
        kind_url("kind-linux-amd64.sha256sum"),
    ]
    assert commands.index(sums) < commands.index(
        [
            "curl",
            "-fL",
            "--retry",
            "3",
            "--progress-bar",
            "-o",
            f"{KIND_DIR}/kind.download",
            kind_url("kind-linux-amd64"),
        ]
    )
    archive = f"istio-{ISTIO_VERSION}-linux-amd64.tar.gz"
    assert [
        "curl",
        "-fsSL",
        "--retry",
        "3",
        "-o",
        f".bin/{archive}.sha256",
        istio_url(f"{archive}.sha256"),
    ] in commands
    for key, what in (
        ("KIND_SHA256_LINUX_AMD64", f"kind-linux-amd64 {KIND_VERSION}"),
        ("ISTIO_SHA256_LINUX_AMD64", archive),
    ):
        assert (
            f"cluster-up.sh: WARNING: no SHA-256 is pinned for {what}: versions.env has no {key}."
            in result.stderr
        )
        assert f"Pin it: add {key}=<sha256> to versions.env." in result.stderr


@pytest.mark.skipif(
    not PINS.get("KIND_SHA256_LINUX_AMD64"), reason="kind is not pinned for linux-amd64"
)
def test_a_pinned_download_needs_no_checksum_file(sandbox: Sandbox) -> None:
    result = sandbox.run("cluster-up.sh", "--dry-run")
    assert not any(argv[-1].endswith(".sha256sum") for argv in plan(result))
    assert "versions.env has no KIND_SHA256" not in result.stderr


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_verified_downloads_are_reused(sandbox: Sandbox) -> None:
    kind = sandbox.root / KIND_DIR / "kind"
    kind.parent.mkdir(parents=True)
    kind.write_bytes(b"a kind binary")
    kind.chmod(0o755)
    istioctl = sandbox.root / ISTIOCTL
    istioctl.parent.mkdir(parents=True)
    istioctl.write_bytes(b"an istioctl binary")
    istioctl.chmod(0o755)
    archive_sha = sha256(b"an Istio archive")
    (sandbox.root / ISTIO_DIR / ".istiolab-archive-sha256").write_text(
        f"{archive_sha}  istio.tar.gz\n"
    )
    sandbox.set_pin("KIND_SHA256_LINUX_AMD64", sha256(b"a kind binary"))
    sandbox.set_pin("ISTIO_SHA256_LINUX_AMD64", archive_sha)
    result = sandbox.run("cluster-up.sh", "--dry-run")
    commands = plan(result)
    assert commands[0] == create_plan()  # nothing to download, unpack or chmod
    assert f"    reusing {KIND_DIR}/kind (SHA-256 {sha256(b'a kind binary')})" in result.stdout
    assert (
        f"    reusing {ISTIO_DIR} (unpacked from istio-{ISTIO_VERSION}-linux-amd64.tar.gz"
        in result.stdout
    )
    assert "WARNING" not in result.stderr


def test_a_download_that_does_not_match_its_pin_is_fetched_again(sandbox: Sandbox) -> None:
    kind = sandbox.root / KIND_DIR / "kind"
    kind.parent.mkdir(parents=True)
    kind.write_bytes(b"not the pinned kind")
    sandbox.set_pin("KIND_SHA256_LINUX_AMD64", sha256(b"the pinned kind"))
    commands = plan(sandbox.run("cluster-up.sh", "--dry-run"))
    assert ["curl", "-fL", "--retry", "3", "--progress-bar", "-o", f"{KIND_DIR}/kind.download",
            kind_url("kind-linux-amd64")] in commands  # fmt: skip


@pytest.mark.parametrize(
    ("system", "cpu", "message", "fix"),
    [
        ("Linux", "riscv64", "they are published for amd64 and arm64 only", "or arm64 machine"),
        ("MINGW64_NT-10.0", "x86_64", "they are published for Linux and macOS only", "inside WSL2"),
        (
            "FreeBSD",
            "amd64",
            "they are published for Linux and macOS only",
            "use a Linux or macOS machine",
        ),
    ],
)
def test_an_unsupported_platform_is_refused(
    tmp_path: Path, system: str, cpu: str, message: str, fix: str
) -> None:
    sandbox = build_sandbox(tmp_path, Machine(system=system, cpu=cpu))
    result = sandbox.run("cluster-up.sh", "--dry-run")
    assert result.returncode == 1
    assert message in result.stderr
    assert fix in result.stderr
    assert not any(argv[0] == "curl" for argv in plan_lines(result.stdout))


def plan_lines(stdout: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


# --- the context guard --------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("how", ["flag", "environment"])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_another_context_is_refused(sandbox: Sandbox, script: str, how: str, dry_run: bool) -> None:
    args = ("--context", "prod") if how == "flag" else ()
    env = {"KUBE_CONTEXT": "prod"} if how == "environment" else {}
    result = sandbox.run(script, *(["--dry-run"] if dry_run else []), *args, **env)
    assert result.returncode == 3
    assert plan_lines(result.stdout) == []
    assert result.stderr.startswith(
        f"{script}: refusing to act on context 'prod':"
        f" it is not the course's cluster ({COURSE_CONTEXT}).\n"
    )
    assert "run this again with --allow-other-context" in result.stderr
    for tool in ("kubectl", "kind", "docker", "curl"):
        assert sandbox.log(tool) == [], f"{tool} was called before the refusal"


def test_the_course_context_needs_no_permission(sandbox: Sandbox) -> None:
    commands = plan(sandbox.run("cluster-up.sh", "--dry-run", "--context", COURSE_CONTEXT))
    assert create_plan() in commands


@pytest.mark.parametrize(("context", "kind_hint"), [("lab", None), ("kind-other", "other")])
def test_another_context_with_permission_gets_the_mesh_but_no_cluster(
    tmp_path: Path, context: str, kind_hint: str | None
) -> None:
    sandbox = build_sandbox(tmp_path, Machine(contexts=(context, COURSE_CONTEXT), docker=None))
    result = sandbox.run(
        "cluster-up.sh", "--dry-run", "--context", context, "--allow-other-context"
    )
    commands = plan(result)
    istio_download = [argv for argv in download_plan(PINS) if "kind" not in " ".join(argv)]
    assert commands == [*istio_download, *mesh_plan(context), *bookinfo_plan(context)]
    assert_every_cluster_command_names(commands, context)
    assert [line.split("] ")[0] + "]" for line in steps(result)] == [
        f"[{n}/6]" for n in range(1, 7)
    ]
    assert f"Bookinfo's images are not built or loaded for context {context}" in result.stdout
    assert "scripts/images.sh --push" in result.stdout
    if kind_hint:
        assert f"a kind cluster: scripts/images.sh --kind-cluster {kind_hint}" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        f"  Bookinfo is running in context {context}. To open it: kubectl --context {context}"
        " port-forward svc/productpage 9080:9080, then http://localhost:9080/productpage"
    )
    assert sandbox.log("docker") == []  # no kind, no Docker needed


# --- --check ------------------------------------------------------------------------------------

STATUS_LINE = re.compile(r"(ok|warn|fail|skip)\t[a-z0-9-]+\t[^\t]*\t[^\t]*")


def run_check(sandbox: Sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = sandbox.run("cluster-up.sh", "--check", "--format=plain", *args, **env)
    for line in result.stdout.splitlines():
        assert STATUS_LINE.fullmatch(line), line
    return result


def test_check_passes_on_a_ready_machine(sandbox: Sandbox) -> None:
    result = run_check(sandbox)
    assert result.returncode == 0, result.stdout
    found = checks(result)
    assert list(found) == CHECK_IDS
    assert {status for status, _, _ in found.values()} == {"ok"}
    assert found["docker-memory"][1] == "8.0 GiB"
    assert found["kubectl"][1] == f"kubectl v1.36.0 (the cluster runs Kubernetes {NODE_VERSION})"
    assert result.stderr == ""
    assert plan_lines(result.stdout) == []
    assert not (sandbox.root / ".bin").exists()


def test_check_human_report(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(docker="down"))
    result = sandbox.run("cluster-up.sh", "--check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == f"Prerequisites of the kind cluster {PINS['KIND_CLUSTER_NAME']} (scripts/cluster-up.sh):"
    )
    assert "  ✓ operating system       Linux" in lines
    daemon = next(i for i, line in enumerate(lines) if line.startswith("  ✗ Docker daemon"))
    assert lines[daemon + 1].strip().startswith("fix: start Docker: sudo systemctl start docker")
    assert (
        lines[-1] == "1 of 13 checks failed: fix them and run scripts/cluster-up.sh --check again."
    )


@dataclass
class Case:
    machine: Machine
    check: str
    status: str
    detail: str
    fix: str = ""


CASES = {
    "docker-missing": Case(
        Machine(docker=None), "docker", "fail", "docker is not installed",
        "install Docker Engine (https://docs.docker.com/engine/install/)",
    ),
    "docker-missing-macos": Case(
        Machine(docker=None, system="Darwin", cpu="arm64"), "docker", "fail",
        "docker is not installed", "install Docker Desktop",
    ),
    "daemon-down": Case(
        Machine(docker="down"), "docker-daemon", "fail",
        "'docker info' failed: Cannot connect to the Docker daemon",
        "start Docker: sudo systemctl start docker",
    ),
    "daemon-down-macos": Case(
        Machine(docker="down", system="Darwin", cpu="arm64"), "docker-daemon", "fail",
        "'docker info' failed", "start Docker: open -a Docker",
    ),
    "daemon-denied": Case(
        Machine(docker="denied"), "docker-daemon", "fail", "permission denied",
        'sudo usermod -aG docker "$USER"',
    ),
    "low-memory": Case(
        Machine(docker_memory=2 * GIB), "docker-memory", "warn", "2.0 GiB; 4 GiB or more",
        "Settings > Resources > Memory",
    ),
    "no-kubectl": Case(
        Machine(kubectl=None), "kubectl", "fail", "kubectl is not installed",
        f"curl -fLO https://dl.k8s.io/release/{NODE_VERSION}/bin/linux/amd64/kubectl"
        " && sudo install -m 0755 kubectl /usr/local/bin/kubectl",
    ),
    "no-kubectl-arm64": Case(
        Machine(kubectl=None, cpu="aarch64"), "kubectl", "fail", "kubectl is not installed",
        f"https://dl.k8s.io/release/{NODE_VERSION}/bin/linux/arm64/kubectl",
    ),
    "kubectl-skew": Case(
        Machine(kubectl="v1.30.2"), "kubectl", "warn",
        "kubectl v1.30.2 is more than one minor version from the cluster's Kubernetes"
        f" {NODE_VERSION}",
        f"https://dl.k8s.io/release/{NODE_VERSION}/",
    ),
    "no-git": Case(
        Machine(tools=("curl", "tar")), "git", "fail", "git is not installed",
        "sudo apt-get install git",
    ),
    "no-curl": Case(
        Machine(tools=("tar", "git")), "curl", "fail", "curl is not installed",
        "sudo apt-get install curl",
    ),
    "inotify-watches": Case(
        Machine(inotify=("8192", "512")), "inotify-watches", "warn",
        "fs.inotify.max_user_watches is 8192; kind needs 524288 or more",
        "sudo sysctl -w fs.inotify.max_user_watches=524288",
    ),
    "inotify-instances": Case(
        Machine(inotify=("524288", "128")), "inotify-instances", "warn",
        "fs.inotify.max_user_instances is 128; kind needs 512 or more",
        "sudo sysctl -w fs.inotify.max_user_instances=512",
    ),
    "inotify-unreadable": Case(Machine(inotify=None), "inotify-watches", "skip", "cannot read"),
    "inotify-macos": Case(
        Machine(system="Darwin", cpu="arm64", inotify=("1", "1")), "inotify-instances", "skip",
        "only Linux hosts need it",
    ),
    "arch": Case(
        Machine(cpu="riscv64"), "arch", "fail",
        "riscv64: kind node images and Istio exist for amd64 and arm64 only", "or arm64 machine",
    ),
    "windows": Case(
        Machine(system="MSYS_NT-10.0"), "os", "fail", "Windows (MSYS_NT-10.0)", "wsl --install"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_check_reports_each_problem_with_its_fix(tmp_path: Path, case: Case) -> None:
    result = run_check(build_sandbox(tmp_path, case.machine))
    found = checks(result)
    status, detail, fix = found[case.check]
    assert status == case.status
    assert case.detail in detail
    assert case.fix in fix
    if status == "fail":
        assert fix
    failed = [check for check, (status, _, _) in found.items() if status == "fail"]
    assert result.returncode == (1 if failed else 0)


def test_check_skips_what_needs_a_missing_docker(tmp_path: Path) -> None:
    found = checks(run_check(build_sandbox(tmp_path, Machine(docker=None))))
    assert found["docker-daemon"] == ("skip", "needs docker", "")
    assert found["docker-memory"] == ("skip", "needs docker", "")


@pytest.fixture
def listener() -> Iterator[int]:
    """A real socket listening on a loopback port: what a busy host port looks like."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_check_finds_the_host_port_busy(sandbox: Sandbox, listener: int) -> None:
    result = run_check(sandbox, INGRESS_HOST_PORT=str(listener))
    assert result.returncode == 1
    status, detail, fix = checks(result)["port"]
    assert status == "fail"
    assert detail == (
        f"something already listens on 127.0.0.1:{listener},"
        " where the kind cluster publishes the ingress gateway"
    )
    assert f"lsof -nP -iTCP:{listener} -sTCP:LISTEN" in fix
    assert "INGRESS_HOST_PORT in versions.env" in fix


def test_check_accepts_the_port_the_course_cluster_holds(tmp_path: Path, listener: int) -> None:
    machine = Machine(
        kind_clusters=(PINS["KIND_CLUSTER_NAME"],), env={"INGRESS_HOST_PORT": str(listener)}
    )
    status, detail, _ = checks(run_check(build_sandbox(tmp_path, machine)))["port"]
    assert status == "ok"
    assert "held by the kind cluster" in detail


def test_check_for_another_context(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(contexts=("lab",), docker=None))
    found = checks(
        run_check(sandbox, "--context", "lab")
    )  # read-only: no --allow-other-context needed
    assert list(found) == ["os", "arch", "kubectl", "curl", "tar", "sha256", "git", "context"]
    assert found["context"] == ("ok", "the cluster answers", "")
    missing = run_check(sandbox, "--context", "nope")
    assert missing.returncode == 1
    status, detail, fix = checks(missing)["context"]
    assert (status, detail) == ("fail", "your kubeconfig has no context named 'nope'")
    assert "kubectl config get-contexts" in fix


def test_check_for_an_unreachable_context(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(contexts=("lab",), reachable=False))
    status, detail, fix = checks(run_check(sandbox, "--context", "lab"))["context"]
    assert status == "fail"
    assert "does not answer: connection refused" in detail
    assert fix.endswith("kubectl --context lab get nodes")


# --- a real run stops before changing anything -------------------------------------------------


def test_failed_prerequisites_stop_a_real_run_before_any_change(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(docker="down"))
    result = sandbox.run("cluster-up.sh")
    assert result.returncode == 1
    assert steps(result) == ["[1/9] Checking the prerequisites"]
    assert "1 of 13 prerequisite checks failed (see above); nothing was changed." in result.stderr
    assert sandbox.log("curl") == []
    assert sandbox.log("kind") == []
    assert not (sandbox.root / ".bin").exists()


def test_a_dry_run_with_failed_prerequisites_still_shows_the_plan(tmp_path: Path) -> None:
    result = build_sandbox(tmp_path, Machine(docker="down", kubectl=None)).run(
        "cluster-up.sh", "--dry-run"
    )
    assert result.returncode == 0
    assert (
        "2 of 13 prerequisite checks failed (see above): a real run would stop here."
        in result.stderr
    )
    assert create_plan() in plan(result)


# --- a real run, against stand-ins for the release files and the cluster -----------------------
#
# The downloads come from a local "mirror" through a stand-in curl, so the real download, checksum
# and unpack code runs. The kind and istioctl in them are stand-ins too (bash scripts that log what
# they are asked), since no cluster can run here.


@dataclass
class Release:
    """Stand-ins for the files the scripts download, served by the stand-in curl."""

    mirror: Path
    kind_sha: str
    istio_sha: str
    archive: str


def make_release(tmp_path: Path, sandbox: Sandbox) -> Release:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    bash = sandbox.bin / "bash"
    kind_log, state = sandbox.logs / "fake-kind.log", tmp_path / "kind-clusters"
    kind = (
        f"#!{bash}\nprintf '%s\\n' \"$*\" >>{shlex.quote(str(kind_log))}\n"
        f'case "$1 $2" in\n'
        f"  'get clusters') cat {shlex.quote(str(state))} 2>/dev/null || true ;;\n"
        f"  'create cluster') echo \"$4\" >>{shlex.quote(str(state))} ;;\n"
        "esac\n"
    ).encode()
    (mirror / "kind-linux-amd64").write_bytes(kind)
    istioctl_log = sandbox.logs / "fake-istioctl.log"
    istioctl = f"#!{bash}\nprintf '%s\\n' \"$*\" >>{shlex.quote(str(istioctl_log))}\n".encode()
    archive = f"istio-{ISTIO_VERSION}-linux-amd64.tar.gz"
    with tarfile.open(mirror / archive, "w:gz") as tar:
        files = {f"istio-{ISTIO_VERSION}/bin/istioctl": (istioctl, 0o755)}
        for addon in ADDONS:
            files[f"istio-{ISTIO_VERSION}/samples/addons/{addon}.yaml"] = (b"kind: List\n", 0o644)
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    istio_sha = sha256((mirror / archive).read_bytes())
    (mirror / f"{archive}.sha256").write_text(f"{istio_sha}  {archive}\n")
    (mirror / "kind-linux-amd64.sha256sum").write_text(f"{sha256(kind)}  kind-linux-amd64\n")
    # curl -o DEST URL: copy the mirror's file of that name, or fail as curl -f does.
    (sandbox.bin / "curl").unlink()
    curl = (
        'while (($# > 1)); do [[ "$1" == -o ]] && dest="$2"; shift; done\n'
        f'src={shlex.quote(str(mirror))}/"${{1##*/}}"\n'
        '[[ -f "$src" ]] || exit 22\n'
        'cat "$src" >"$dest"'
    )
    stand_in(sandbox.bin, sandbox.logs, "curl", curl)
    for tool in ("tar", "gzip", "mkdir", "mv", "rm", "chmod"):
        (sandbox.bin / tool).unlink(missing_ok=True)
        link(sandbox.bin, tool)
    return Release(mirror, sha256(kind), istio_sha, archive)


@pytest.fixture
def released(tmp_path: Path) -> tuple[Sandbox, Release]:
    """A ready machine whose downloads are pinned stand-ins, with a kind config for its port."""
    sandbox = build_sandbox(tmp_path, Machine())
    release = make_release(tmp_path, sandbox)
    sandbox.set_pin("KIND_SHA256_LINUX_AMD64", release.kind_sha)
    sandbox.set_pin("ISTIO_SHA256_LINUX_AMD64", release.istio_sha)
    config = sandbox.root / "manifests/kind/cluster.yaml"
    port = sandbox.env["INGRESS_HOST_PORT"]
    config.write_text(re.sub(r"hostPort: \d+", f"hostPort: {port}", config.read_text()))
    return sandbox, release


def test_a_real_run_does_what_the_dry_run_planned(released: tuple[Sandbox, Release]) -> None:
    sandbox, release = released
    planned = plan(sandbox.run("cluster-up.sh", "--dry-run"))
    result = sandbox.run("cluster-up.sh")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "Bookinfo is running. After the gateway lab it will be at"
        f" http://localhost:{sandbox.env['INGRESS_HOST_PORT']}/productpage; until then:"
        f" kubectl --context {COURSE_CONTEXT} port-forward svc/productpage 9080:9080"
    )
    # The trace on stderr is the plan, line for line.
    traced = [shlex.split(line[2:]) for line in result.stderr.splitlines() if line.startswith("+ ")]
    # (images.sh traces its own docker and kind commands too; the plan shows them indented.)
    ours = [argv for argv in traced if argv[0] not in ("docker", "kind")]
    assert ours == planned
    assert create_plan()[1:] in [line.split() for line in sandbox.log("fake-kind")]
    assert sandbox.log("fake-istioctl") == [
        f"install --context {COURSE_CONTEXT} -y -f manifests/istio/istio-operator.yaml"
    ]
    kind = sandbox.root / KIND_DIR / "kind"
    assert sha256(kind.read_bytes()) == release.kind_sha
    stamp = (sandbox.root / ISTIO_DIR / ".istiolab-archive-sha256").read_text()
    assert stamp == f"{release.istio_sha}  {release.archive}\n"
    assert sorted(p.name for p in (sandbox.root / ".bin").iterdir()) == sorted(
        [f"kind-{KIND_VERSION}", f"istio-{ISTIO_VERSION}", release.archive]
    )
    assert len(sandbox.log("curl")) == 2


def test_a_second_real_run_downloads_and_creates_nothing(released: tuple[Sandbox, Release]) -> None:
    sandbox, _ = released
    assert sandbox.run("cluster-up.sh", "--skip-images").returncode == 0
    again = sandbox.run("cluster-up.sh", "--skip-images")
    assert again.returncode == 0, again.stderr
    assert len(sandbox.log("curl")) == 2  # from the first run only
    assert f"    reusing {KIND_DIR}/kind" in again.stdout
    assert f"    reusing {ISTIO_DIR}" in again.stdout
    assert "already exists: keeping it" in again.stdout
    creates = [line for line in sandbox.log("fake-kind") if line.startswith("create")]
    assert len(creates) == 1


def test_a_download_with_the_wrong_checksum_is_deleted(released: tuple[Sandbox, Release]) -> None:
    sandbox, release = released
    sandbox.set_pin("KIND_SHA256_LINUX_AMD64", "0" * 64)
    result = sandbox.run("cluster-up.sh")
    assert result.returncode == 1
    assert (
        f"the SHA-256 of {kind_url('kind-linux-amd64')} is {release.kind_sha}, not {'0' * 64}:"
        " the download is not the file this course pins, so it was deleted." in result.stderr
    )
    assert list((sandbox.root / KIND_DIR).iterdir()) == []
    assert sandbox.log("fake-kind") == []


def test_an_unpinned_download_uses_the_publisher_checksum(
    released: tuple[Sandbox, Release],
) -> None:
    sandbox, release = released
    sandbox.set_pin("ISTIO_SHA256_LINUX_AMD64", None)
    result = sandbox.run("cluster-up.sh", "--skip-images")
    assert result.returncode == 0, result.stderr
    assert "WARNING: no SHA-256 is pinned for" in result.stderr
    assert (
        f"once you trust it, pin it: ISTIO_SHA256_LINUX_AMD64={release.istio_sha}" in result.stderr
    )
    again = sandbox.run("cluster-up.sh", "--skip-images")
    assert f"    reusing {ISTIO_DIR}" in again.stdout  # checked against the saved checksum file
    assert len(sandbox.log("curl")) == 3  # kind, Istio's checksum file, Istio: once each
    (release.mirror / f"{release.archive}.sha256").write_text("not a checksum\n")
    (sandbox.root / f".bin/{release.archive}.sha256").unlink()
    broken = sandbox.run("cluster-up.sh", "--skip-images")
    assert broken.returncode == 1
    assert f"{istio_url(release.archive)}.sha256 does not hold a SHA-256." in broken.stderr


# --- cluster-down.sh ----------------------------------------------------------------------------


def test_down_deletes_the_course_cluster(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(kind_clusters=(PINS["KIND_CLUSTER_NAME"],)))
    result = sandbox.run("cluster-down.sh", "--dry-run")
    assert plan(result) == [["kind", "delete", "cluster", "--name", PINS["KIND_CLUSTER_NAME"]]]
    assert (
        f"The downloads stay in .bin/ (kind {KIND_VERSION}, Istio {ISTIO_VERSION})" in result.stdout
    )


def test_down_prefers_the_pinned_kind(sandbox: Sandbox) -> None:
    kind = sandbox.root / KIND_DIR / "kind"
    kind.parent.mkdir(parents=True)
    kind.write_text(f"#!{sandbox.bin / 'bash'}\necho {PINS['KIND_CLUSTER_NAME']}\n")
    kind.chmod(0o755)
    commands = plan(sandbox.run("cluster-down.sh", "--dry-run"))
    assert commands == [
        [f"{KIND_DIR}/kind", "delete", "cluster", "--name", PINS["KIND_CLUSTER_NAME"]]
    ]


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_down_with_no_cluster_has_nothing_to_do(tmp_path: Path, dry_run: bool) -> None:
    sandbox = build_sandbox(tmp_path, Machine(kind_clusters=("other",)))
    result = sandbox.run("cluster-down.sh", *(["--dry-run"] if dry_run else []))
    assert result.returncode == 0, result.stderr
    assert (
        f"there is no kind cluster named {PINS['KIND_CLUSTER_NAME']}: nothing to delete"
        in result.stdout
    )
    assert plan_lines(result.stdout) == []
    assert sandbox.log("kind") == ["get clusters"]


def test_down_can_delete_the_downloads(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(kind_clusters=()))
    result = sandbox.run("cluster-down.sh", "--dry-run", "--delete-downloads")
    assert plan(result) == [["rm", "-rf", ".bin"]]
    assert steps(result) == [
        "[1/2] Deleting the kind cluster istiolab",
        "[2/2] Deleting the downloads in .bin/",
    ]
    kept = sandbox.run("cluster-down.sh", "--dry-run", "--delete-downloads", "--keep-downloads")
    assert plan(kept) == []


def test_down_on_another_context_uninstalls_and_keeps_the_cluster(tmp_path: Path) -> None:
    sandbox = build_sandbox(tmp_path, Machine(contexts=("lab",)))
    later = sandbox.root / "manifests/stages/01-later"
    later.mkdir()
    (later / "kustomization.yaml").write_text("resources:\n  - ../00-bookinfo\n")
    result = sandbox.run(
        "cluster-down.sh", "--dry-run", "--context", "lab", "--allow-other-context"
    )
    commands = plan(result)
    istio_download = [argv for argv in download_plan(PINS) if "kind" not in " ".join(argv)]
    addons = [arg for addon in ADDONS for arg in ("-f", f"{ISTIO_DIR}/samples/addons/{addon}.yaml")]
    assert commands == [
        *istio_download,
        [
            "kubectl",
            "--context",
            "lab",
            "delete",
            "-k",
            "manifests/stages/01-later",
            "--ignore-not-found",
        ],
        [
            "kubectl",
            "--context",
            "lab",
            "delete",
            "-k",
            "manifests/stages/00-bookinfo",
            "--ignore-not-found",
        ],
        ["kubectl", "--context", "lab", "delete", *addons, "--ignore-not-found"],
        [
            "kubectl",
            "--context",
            "lab",
            "delete",
            "-f",
            "manifests/istio/telemetry.yaml",
            "--ignore-not-found",
        ],
        [
            ISTIOCTL,
            "uninstall",
            "--context",
            "lab",
            "-y",
            "-f",
            "manifests/istio/istio-operator.yaml",
        ],
    ]
    assert not any("kind" in argv[0] for argv in commands)
    assert "the Gateway API CRDs stay" in result.stdout


# --- what the scripts never do ------------------------------------------------------------------

CLUSTER_SCRIPTS = [ROOT / "scripts" / name for name in (*SCRIPTS, "lib/cluster.sh", "images.sh")]
COMMAND_START = r"(?:^|[;&|({]|\$\(|\bthen|\bdo|\belse|\bif|!)\s*"


@pytest.mark.parametrize("script", CLUSTER_SCRIPTS, ids=lambda path: path.name)
def test_no_sleep_no_which_no_curl_into_a_shell(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    assert not re.search(r"\bsleep\b", text), "wait with kubectl wait or rollout status --timeout"
    assert not re.search(COMMAND_START + r"which\s", text, re.M), "use command -v"
    assert not re.search(r"curl[^\n]*\|\s*(sudo\s+)?(ba|z)?sh\b", text), (
        "never pipe a download into a shell"
    )
    assert not re.search(r"apply[^\n]*-f\s+https?://", text), "apply pinned files, not URLs"
