# shellcheck shell=bash
# The logic scripts/cluster-up.sh and scripts/cluster-down.sh share: the pinned versions, the
# kubectl context they act on and the guard around it, the prerequisite checks with the exact fix
# for each failure, the pinned and checksummed downloads into .bin/, the options both take, and
# (from scripts/lib/commands.sh) the one wrapper every command that changes something goes
# through, so that --dry-run prints it instead of running it.
#
# Source it from the repository root, after setting PROG to the script's name and defining usage
# and script_option (see parse_args). It defines functions and variables and changes nothing by
# itself. It runs on the bash 3.2 of macOS too: no
# associative arrays, no ${var^^}, no mapfile, and an array is only expanded when it has items.

PROG="${PROG:-cluster}"

# Set from the options (DRY_RUN also from the environment, CONTEXT_ARG from KUBE_CONTEXT).
DRY_RUN="${DRY_RUN:-0}"          # 1: print each changing command as "+ command" and run none of them
CONTEXT_ARG="${KUBE_CONTEXT:-}"  # the context --context names; empty: the course's kind cluster
ALLOW_OTHER_CONTEXT=0            # 1: the learner allowed acting on a context that is not the course's
REPORT_FORMAT=human              # how report() prints a check: human (✓/✗ lines) or plain (tab-separated)

# Set by resolve_context.
CONTEXT=""         # the kubectl context every kubectl and istioctl command names explicitly
COURSE_CONTEXT=""  # kind-$KIND_CLUSTER_NAME, the context kind creates for the course's cluster
USE_KIND=1         # 1: CONTEXT is the course's kind cluster; 0: an existing cluster (--context)

# Set by detect_platform.
UNAME_S="" UNAME_M=""
OS=""    # linux or darwin; empty on any other system
ARCH=""  # amd64 or arm64; empty on any other CPU

# The repository's files and the settings the scripts share (some are read only by the scripts).
# shellcheck disable=SC2034
{
    readonly BIN_DIR=".bin"
    readonly KIND_CONFIG="manifests/kind/cluster.yaml"
    readonly ISTIO_OPERATOR="manifests/istio/istio-operator.yaml"
    readonly ISTIO_TELEMETRY="manifests/istio/telemetry.yaml"
    readonly BOOKINFO_STAGE="manifests/stages/00-bookinfo"
    readonly ADDONS="prometheus jaeger kiali grafana"
    readonly WAIT_TIMEOUT="300s"
    # Below these, kind's nodes run out of inotify watches or instances and pods fail with "too
    # many open files" (kind's known-issues page).
    readonly MIN_INOTIFY_WATCHES=524288
    readonly MIN_INOTIFY_INSTANCES=512
    readonly MIN_DOCKER_MEMORY_GIB=4
}

# --- messages ------------------------------------------------------------------------------------

say() {
    printf '%s\n' "$*"
}

note() {
    printf '%s: note: %s\n' "$PROG" "$*" >&2
}

warn() {
    printf '%s: warning: %s\n' "$PROG" "$*" >&2
}

# Something is missing or failed: say what and how to fix it, and exit 1.
die() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    if (($# > 1)); then
        printf 'fix: %s\n' "$2" >&2
    fi
    exit 1
}

# A mistake in the command line: say what, and exit 2.
usage_error() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    printf "Run 'scripts/%s --help' for the options.\n" "$PROG" >&2
    exit 2
}

# An option the script does not know: say so, show the usage (the script's usage function), and
# exit 2.
unknown_option() {
    printf '%s: unknown option '"'"'%s'"'"'\n\n' "$PROG" "$1" >&2
    usage >&2
    exit 2
}

# The script will not touch what the learner did not clearly ask it to: say why, and exit 3.
refuse() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    exit 3
}

# "[3/9] Installing Istio 1.30.5": STEPS is set by the script once it knows its plan.
STEP=0
STEPS=0
step() {
    STEP=$((STEP + 1))
    printf '[%d/%d] %s\n' "$STEP" "$STEPS" "$1"
}

# --- the command line ----------------------------------------------------------------------------


# --context NAME or --context=NAME: NAME is empty when none was given.
set_context_arg() {
    [[ -n "$1" ]] || usage_error "--context needs the name of a kubectl context"
    CONTEXT_ARG="$1"
}

# parse_args ARG...: the command line. The options both scripts take are read here; any other goes
# to the script's own function script_option ARG..., which reads "$1" (or calls unknown_option)
# and sets OPTION_WORDS=2 when it takes "$2" as the option's value.
OPTION_WORDS=1
parse_args() {
    while (($# > 0)); do
        OPTION_WORDS=1
        case "$1" in
            -h | --help)
                usage
                exit 0
                ;;
            --dry-run) DRY_RUN=1 ;;
            --context)
                set_context_arg "${2:-}"
                OPTION_WORDS=2
                ;;
            --context=*) set_context_arg "${1#*=}" ;;
            --allow-other-context) ALLOW_OTHER_CONTEXT=1 ;;
            *) script_option "$@" ;;
        esac
        shift "$OPTION_WORDS"
    done
}

# setup ARG...: what both scripts do first: DRY_RUN from the environment, then the command line,
# the pins, this machine's platform and the context to act on.
setup() {
    dry_run_from_env
    parse_args "$@"
    load_versions
    detect_platform
    resolve_context "$CONTEXT_ARG"
}

# The first line of a dry run's plan.
announce_dry_run() {
    if ((DRY_RUN)); then
        say "Dry run: each command that would change something is printed as \"+ command\" and not run."
    fi
}

# --- running commands ----------------------------------------------------------------------------

# quote_word, quote_command, show, run, run_pipe and run_write: every command that changes
# something goes through run, run_pipe or run_write.
# shellcheck source=scripts/lib/commands.sh
source scripts/lib/commands.sh

have() {
    command -v "$1" >/dev/null 2>&1
}

# --- versions.env --------------------------------------------------------------------------------

# pin KEY: the value of KEY in versions.env, or nothing when the key is absent or empty.
pin() {
    local line
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" == "$1="* ]]; then
            printf '%s\n' "${line#*=}"
            return 0
        fi
    done <versions.env
}

# Read the pins. Versions come from versions.env alone: a learner who followed istio.io may have
# ISTIO_VERSION exported for another release, and the checksums below only fit the pinned one.
# Only the cluster's name and the host port may be changed from the environment.
# shellcheck disable=SC2034  # the pins are read by the scripts that source this file
load_versions() {
    local key from_env
    [[ -f versions.env ]] ||
        die "cannot find versions.env at the repository root." "restore it: git checkout -- versions.env"
    for key in ISTIO_VERSION KIND_VERSION KIND_NODE_IMAGE GATEWAY_API_VERSION; do
        from_env="${!key:-}"
        if [[ -n "$from_env" && "$from_env" != "$(pin "$key")" ]]; then
            note "ignoring $key=$from_env from the environment: the course pins $key in versions.env."
        fi
    done
    ISTIO_VERSION="$(pin ISTIO_VERSION)"
    KIND_VERSION="$(pin KIND_VERSION)"
    KIND_NODE_IMAGE="$(pin KIND_NODE_IMAGE)"
    GATEWAY_API_VERSION="$(pin GATEWAY_API_VERSION)"
    INGRESS_NODE_PORT="$(pin INGRESS_NODE_PORT)"
    BOOKINFO_IMAGE_PREFIX="$(pin BOOKINFO_IMAGE_PREFIX)"
    BOOKINFO_IMAGE_TAG="$(pin BOOKINFO_IMAGE_TAG)"
    KIND_CLUSTER_NAME="${KIND_CLUSTER_NAME:-$(pin KIND_CLUSTER_NAME)}"
    INGRESS_HOST_PORT="${INGRESS_HOST_PORT:-$(pin INGRESS_HOST_PORT)}"
    for key in ISTIO_VERSION KIND_VERSION KIND_NODE_IMAGE KIND_CLUSTER_NAME INGRESS_HOST_PORT \
        INGRESS_NODE_PORT BOOKINFO_IMAGE_PREFIX BOOKINFO_IMAGE_TAG; do
        [[ -n "${!key}" ]] || die "versions.env has no $key." "restore it: git checkout -- versions.env"
    done
    [[ "$KIND_CLUSTER_NAME" =~ ^[a-z0-9][a-z0-9.-]*$ ]] ||
        usage_error "KIND_CLUSTER_NAME must be lower-case letters, digits, '.' and '-', not '$KIND_CLUSTER_NAME'"
    if [[ ! "$INGRESS_HOST_PORT" =~ ^[0-9]+$ ]] || ((INGRESS_HOST_PORT < 1 || INGRESS_HOST_PORT > 65535)); then
        usage_error "INGRESS_HOST_PORT must be a port number, not '$INGRESS_HOST_PORT'"
    fi
}

# The Kubernetes version of the node image: kindest/node:v1.36.1@sha256:... -> v1.36.1
node_kubernetes_version() {
    local tag="${KIND_NODE_IMAGE#*:}"
    printf '%s\n' "${tag%%@*}"
}

# --- the context ---------------------------------------------------------------------------------

# resolve_context NAME: act on context NAME, or on the course's kind cluster when NAME is empty.
resolve_context() {
    COURSE_CONTEXT="kind-$KIND_CLUSTER_NAME"
    CONTEXT="${1:-$COURSE_CONTEXT}"
    if [[ "$CONTEXT" == "$COURSE_CONTEXT" ]]; then
        USE_KIND=1
    else
        USE_KIND=0
    fi
}

# guard_context WHAT: refuse (exit 3) to do WHAT to a context that is not the course's, unless
# --allow-other-context said so. WHAT completes "This would ...".
guard_context() {
    if ((USE_KIND || ALLOW_OTHER_CONTEXT)); then
        return 0
    fi
    refuse "refusing to act on context '$CONTEXT': it is not the course's cluster ($COURSE_CONTEXT).
This would $1.
If that is what you want, run this again with --allow-other-context; to use the course's own kind
cluster instead, leave --context out (and unset KUBE_CONTEXT)."
}

kind_context_cluster() {
    # The kind cluster behind a context kind made (kind-NAME), or nothing.
    if [[ "$1" == kind-* ]]; then
        printf '%s\n' "${1#kind-}"
    fi
}

# --- the platform --------------------------------------------------------------------------------

detect_platform() {
    UNAME_S="$(uname -s 2>/dev/null || true)"
    UNAME_M="$(uname -m 2>/dev/null || true)"
    case "$UNAME_S" in
        Linux) OS=linux ;;
        Darwin) OS=darwin ;;
        *) OS="" ;;
    esac
    case "$UNAME_M" in
        x86_64 | amd64) ARCH=amd64 ;;
        arm64 | aarch64) ARCH=arm64 ;;
        *) ARCH="" ;;
    esac
}

# The suffix of the pin keys for this platform: LINUX_AMD64, DARWIN_ARM64, ...
platform_key() {
    local os_key=LINUX arch_key=AMD64
    if [[ "$OS" == darwin ]]; then
        os_key=DARWIN
    fi
    if [[ "$ARCH" == arm64 ]]; then
        arch_key=ARM64
    fi
    printf '%s_%s\n' "$os_key" "$arch_key"
}

# Downloads need a platform kind and Istio publish binaries for.
require_platform() {
    [[ -n "$OS" ]] || die "cannot download kind and Istio for ${UNAME_S:-this system}: they are published for Linux and macOS only." \
        "$(os_fix)"
    [[ -n "$ARCH" ]] || die "cannot download kind and Istio for the CPU ${UNAME_M:-of this machine}: they are published for amd64 and arm64 only." \
        "$(arch_fix)"
}

os_fix() {
    case "$UNAME_S" in
        MINGW* | MSYS* | CYGWIN* | Windows*)
            printf '%s\n' "run the course inside WSL2: install Ubuntu (wsl --install), turn on Docker Desktop's WSL integration for it, clone the repository inside WSL and run this script there"
            ;;
        *)
            printf '%s\n' "use a Linux or macOS machine (on Windows: WSL2)"
            ;;
    esac
}

arch_fix() {
    printf '%s\n' "use an x86_64 (amd64) or arm64 machine; kind's node images and Istio's releases exist for those two only"
}

# --- checksums and downloads ---------------------------------------------------------------------

# The SHA-256 of FILE, with sha256sum (Linux) or shasum (macOS); nothing if neither is there.
file_sha256() {
    local out
    if have sha256sum; then
        out="$(sha256sum "$1")" || return 1
    elif have shasum; then
        out="$(shasum -a 256 "$1")" || return 1
    else
        return 1
    fi
    printf '%s\n' "${out%% *}"
}

first_word() {
    local word="" rest
    if [[ -f "$1" ]]; then
        read -r word rest <"$1" || true
    fi
    printf '%s\n' "$word"
}

# The SHA-256 a download must have: its pin in versions.env, else the publisher's checksum saved
# beside it by an earlier download (SUMS_FILE), else nothing.
expected_sha256() {
    local key="$1" sums_file="$2" value
    value="$(pin "$key")"
    if [[ -z "$value" ]]; then
        value="$(first_word "$sums_file")"
    fi
    printf '%s\n' "$value"
}

warn_unpinned() {
    local key="$1" what="$2"
    printf '%s: WARNING: no SHA-256 is pinned for %s: versions.env has no %s.\n' "$PROG" "$what" "$key" >&2
    printf '%s: WARNING: checking it against the publisher'"'"'s own checksum file instead, which catches a broken\n' "$PROG" >&2
    printf '%s: WARNING: download but not a tampered release. Pin it: add %s=<sha256> to versions.env.\n' "$PROG" "$key" >&2
}

# fetch_verified WHAT URL DEST PIN_KEY SUMS_URL
# Make DEST the file at URL, with the SHA-256 pinned as PIN_KEY in versions.env. A DEST that is
# already there with that SHA-256 is kept, so a second run downloads nothing. Without a pin, the
# publisher's checksum file at SUMS_URL is the reference (saved beside DEST, as DEST.sha256 or
# DEST.sha256sum like the publisher's), with a warning.
# Sets VERIFIED_SHA256.
VERIFIED_SHA256=""
fetch_verified() {
    local what="$1" url="$2" dest="$3" key="$4" sums_url="$5"
    local sums_file="$dest.${sums_url##*.}" expected actual pinned
    pinned="$(pin "$key")"
    if [[ -z "$pinned" ]]; then
        warn_unpinned "$key" "$what"
    fi
    expected="$(expected_sha256 "$key" "$sums_file")"
    if [[ -n "$expected" && -f "$dest" ]] && [[ "$(file_sha256 "$dest" || true)" == "$expected" ]]; then
        say "    reusing $dest (SHA-256 $expected)"
        VERIFIED_SHA256="$expected"
        return 0
    fi
    run mkdir -p "${dest%/*}"
    if [[ -z "$pinned" ]]; then
        run curl -fsSL --retry 3 -o "$sums_file" "$sums_url"
        expected="$(first_word "$sums_file")"
        if ((!DRY_RUN)) && [[ ! "$expected" =~ ^[0-9a-f]{64}$ ]]; then
            run rm -f "$sums_file"
            die "$sums_url does not hold a SHA-256." "pin $key in versions.env and run this again."
        fi
    fi
    run curl -fL --retry 3 --progress-bar -o "$dest.download" "$url"
    if ((DRY_RUN)); then
        say "    then check that its SHA-256 is ${expected:-the one in $sums_file}"
        VERIFIED_SHA256="${expected:-<the SHA-256 in $sums_file>}"
    else
        actual="$(file_sha256 "$dest.download")" || die "cannot compute a SHA-256: neither sha256sum nor shasum works." "$(sha256_fix)"
        if [[ "$actual" != "$expected" ]]; then
            run rm -f "$dest.download"
            if [[ -n "$pinned" ]]; then
                die "the SHA-256 of $url is $actual, not $expected: the download is not the file this course pins, so it was deleted." \
                    "run this again; if it fails the same way, do not use that file, and report it (the pin is $key in versions.env)."
            fi
            die "the SHA-256 of $url is $actual, not the $expected that $sums_url gives: the download is broken, so it was deleted." \
                "run this again; if it fails the same way, report it."
        fi
        VERIFIED_SHA256="$actual"
        if [[ -z "$pinned" ]]; then
            note "$what has SHA-256 $actual (as $sums_url says); once you trust it, pin it: $key=$actual"
        fi
    fi
    run mv "$dest.download" "$dest"
}

# The pinned kind, as .bin/kind-<version>/kind.
kind_path() {
    printf '%s\n' "$BIN_DIR/kind-$KIND_VERSION/kind"
}

ensure_kind() {
    local asset url dest
    require_platform
    asset="kind-$OS-$ARCH"
    url="https://github.com/kubernetes-sigs/kind/releases/download/$KIND_VERSION/$asset"
    dest="$(kind_path)"
    fetch_verified "$asset $KIND_VERSION" "$url" "$dest" "KIND_SHA256_$(platform_key)" "$url.sha256sum"
    if [[ ! -x "$dest" ]]; then
        run chmod +x "$dest"
    fi
}

istio_dir() {
    printf '%s\n' "$BIN_DIR/istio-$ISTIO_VERSION"
}

istioctl_path() {
    printf '%s\n' "$(istio_dir)/bin/istioctl"
}

# The Istio release archive for this platform: istio-1.30.5-linux-amd64, -linux-arm64, -osx, -osx-arm64.
istio_archive_name() {
    local platform="$OS-$ARCH"
    case "$platform" in
        darwin-amd64) platform=osx ;;
        darwin-arm64) platform=osx-arm64 ;;
    esac
    printf '%s\n' "istio-$ISTIO_VERSION-$platform.tar.gz"
}

# The Istio release archive, checked and unpacked as .bin/istio-<version>/ (istioctl in bin/, the
# addons in samples/addons/). The unpacked tree records the SHA-256 of the archive it came from,
# so it is reused only when that is still the expected one.
ensure_istio() {
    local archive url dest dir stamp key expected
    require_platform
    archive="$(istio_archive_name)"
    url="https://github.com/istio/istio/releases/download/$ISTIO_VERSION/$archive"
    dest="$BIN_DIR/$archive"
    dir="$(istio_dir)"
    stamp="$dir/.istiolab-archive-sha256"
    key="ISTIO_SHA256_$(platform_key)"
    expected="$(expected_sha256 "$key" "$dest.sha256")"
    if [[ -n "$expected" && -x "$dir/bin/istioctl" && "$(first_word "$stamp")" == "$expected" ]]; then
        say "    reusing $dir (unpacked from $archive, SHA-256 $expected)"
        return 0
    fi
    fetch_verified "$archive" "$url" "$dest" "$key" "$url.sha256"
    run rm -rf "$dir"
    run tar -xzf "$dest" -C "$BIN_DIR"
    run_write "$stamp" "$VERIFIED_SHA256  $archive"
}

# --- reading the clusters (read-only, so these run in a dry run too) ----------------------------

# A kind that can list clusters: the pinned one if downloaded, else one on PATH.
kind_for_reading() {
    if [[ -x "$(kind_path)" ]]; then
        kind_path
    elif have kind; then
        printf '%s\n' kind
    fi
}

# kind_cluster_state NAME: yes, no, or unknown (no kind or docker to ask, or Docker is down).
kind_cluster_state() {
    local kind out name
    kind="$(kind_for_reading)"
    if [[ -n "$kind" ]] && out="$("$kind" get clusters 2>/dev/null)"; then
        while IFS= read -r name; do
            if [[ "$name" == "$1" ]]; then
                printf 'yes\n'
                return 0
            fi
        done <<<"$out"
        printf 'no\n'
    elif have docker && out="$(docker ps -a --filter "label=io.x-k8s.kind.cluster=$1" --format '{{.Names}}' 2>/dev/null)"; then
        if [[ -n "$out" ]]; then
            printf 'yes\n'
        else
            printf 'no\n'
        fi
    else
        printf 'unknown\n'
    fi
}

context_exists() {
    local name
    have kubectl || return 1
    while IFS= read -r name; do
        if [[ "$name" == "$1" ]]; then
            return 0
        fi
    done < <(kubectl config get-contexts -o name 2>/dev/null || true)
    return 1
}

# The Gateway API bundle version of the CRDs in the cluster, or nothing.
gateway_api_installed() {
    have kubectl || return 0
    kubectl --context "$CONTEXT" --request-timeout=10s get crd gateways.gateway.networking.k8s.io \
        -o 'jsonpath={.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version}' 2>/dev/null || true
}

# The Deployments a kustomization makes, one "NAMESPACE NAME" a line (default for none),
# read from `kubectl kustomize`, whose output has each resource's top-level keys at column 0 and
# metadata's own keys two spaces in.
kustomization_deployments() {
    local line section="" kind="" name="" namespace="" out
    have kubectl || return 0
    out="$(kubectl kustomize "$1" 2>/dev/null)" || return 0
    out+=$'\n---'
    while IFS= read -r line; do
        case "$line" in
            ---*)
                if [[ "$kind" == Deployment && -n "$name" ]]; then
                    printf '%s %s\n' "${namespace:-default}" "$name"
                fi
                section="" kind="" name="" namespace=""
                ;;
            kind:*)
                kind="${line#kind:}"
                kind="${kind// /}"
                section=kind
                ;;
            "  name:"*)
                if [[ "$section" == metadata ]]; then
                    name="${line#  name:}"
                    name="${name// /}"
                fi
                ;;
            "  namespace:"*)
                if [[ "$section" == metadata ]]; then
                    namespace="${line#  namespace:}"
                    namespace="${namespace// /}"
                fi
                ;;
            [a-zA-Z]*:*)
                section="${line%%:*}"
                ;;
        esac
    done <<<"$out"
}

# --- prerequisite checks -------------------------------------------------------------------------

CHECKS_TOTAL=0
CHECKS_FAILED=0
CHECKS_WARNED=0

one_line() {
    local text="${1//$'\t'/ }"
    printf '%s' "${text//$'\n'/ }"
}

# report STATUS ID TITLE DETAIL [FIX]: one check's result. STATUS is ok, warn, fail or skip; ID is
# a stable name for programs (istiolab doctor), TITLE the same for people.
report() {
    local status="$1" id="$2" title="$3" detail="$4" fix="${5:-}" mark
    CHECKS_TOTAL=$((CHECKS_TOTAL + 1))
    case "$status" in
        fail) CHECKS_FAILED=$((CHECKS_FAILED + 1)) ;;
        warn) CHECKS_WARNED=$((CHECKS_WARNED + 1)) ;;
    esac
    if [[ "$REPORT_FORMAT" == plain ]]; then
        printf '%s\t%s\t%s\t%s\n' "$status" "$id" "$(one_line "$detail")" "$(one_line "$fix")"
        return 0
    fi
    case "$status" in
        ok) mark="✓" ;;
        fail) mark="✗" ;;
        warn) mark="!" ;;
        *) mark="-" ;;
    esac
    printf '  %s %-22s %s\n' "$mark" "$title" "$detail"
    if [[ -n "$fix" ]]; then
        printf '    %-22s fix: %s\n' "" "$fix"
    fi
}

check_os() {
    case "$UNAME_S" in
        Linux) report ok os "operating system" "Linux" ;;
        Darwin) report ok os "operating system" "macOS" ;;
        MINGW* | MSYS* | CYGWIN* | Windows*)
            report fail os "operating system" "Windows ($UNAME_S): kind and this script need Linux or macOS" "$(os_fix)"
            ;;
        *) report fail os "operating system" "${UNAME_S:-unknown}: only Linux and macOS are supported" "$(os_fix)" ;;
    esac
}

check_arch() {
    if [[ -n "$ARCH" ]]; then
        report ok arch "CPU architecture" "$UNAME_M ($ARCH)"
    else
        report fail arch "CPU architecture" "${UNAME_M:-unknown}: kind node images and Istio exist for amd64 and arm64 only" "$(arch_fix)"
    fi
}

docker_install_fix() {
    if [[ "$OS" == darwin ]]; then
        printf '%s\n' "install Docker Desktop (https://docs.docker.com/desktop/setup/install/mac-install/, or: brew install --cask docker), open it once, then run this again"
    else
        printf '%s\n' "install Docker Engine (https://docs.docker.com/engine/install/), then let your user run it: sudo usermod -aG docker \"\$USER\" and log out and in again"
    fi
}

docker_start_fix() {
    if [[ "$OS" == darwin ]]; then
        printf '%s\n' "start Docker: open -a Docker, and wait until Docker Desktop says it is running"
    else
        printf '%s\n' "start Docker: sudo systemctl start docker (Docker Desktop: open it and wait until it is running), then run this again"
    fi
}

docker_memory_fix() {
    if [[ "$OS" == darwin ]]; then
        printf '%s\n' "give Docker more memory: Docker Desktop > Settings > Resources > Memory: 6 GB or more, then Apply & restart"
    else
        printf '%s\n' "Docker Engine uses the machine's memory: close other programs or use a machine with more (Docker Desktop: Settings > Resources > Memory: 6 GB or more)"
    fi
}

# The error in the output of a failed `docker info --format ...`: its first line that is not the
# (empty) formatted answer.
docker_error() {
    local line
    while IFS= read -r line; do
        if [[ -n "${line// /}" && ! "$line" =~ ^[^[:space:]]*\ [0-9]*$ ]]; then
            printf '%s\n' "$line"
            return 0
        fi
    done <<<"$1"
    printf '%s\n' "no error message"
}

# check_docker: the docker command, its daemon, and the memory it has.
check_docker() {
    local out status=0 version="" mem="" line gib_tenths
    if ! have docker; then
        report fail docker "docker" "docker is not installed (not on PATH)" "$(docker_install_fix)"
        report skip docker-daemon "Docker daemon" "needs docker"
        report skip docker-memory "Docker memory" "needs docker"
        return 0
    fi
    report ok docker "docker" "$(command -v docker)"
    out="$(docker info --format '{{.ServerVersion}} {{.MemTotal}}' 2>&1)" || status=$?
    if ((status != 0)); then
        line="$(docker_error "$out")"
        if [[ "$out" == *"ermission denied"* ]]; then
            report fail docker-daemon "Docker daemon" "'docker info' failed: permission denied: your user may not use Docker" \
                "let your user use Docker: sudo usermod -aG docker \"\$USER\", then log out and in again (or run: newgrp docker)"
        else
            report fail docker-daemon "Docker daemon" "'docker info' failed: ${line:0:160}" "$(docker_start_fix)"
        fi
        report skip docker-memory "Docker memory" "needs a running Docker daemon"
        return 0
    fi
    while IFS= read -r line; do
        if [[ "$line" =~ ^([^[:space:]]+)\ ([0-9]+)$ ]]; then
            version="${BASH_REMATCH[1]}" mem="${BASH_REMATCH[2]}"
        fi
    done <<<"$out"
    report ok docker-daemon "Docker daemon" "Docker ${version:-(version unknown)} is running"
    if [[ -z "$mem" ]]; then
        report skip docker-memory "Docker memory" "'docker info' did not say how much memory Docker has"
        return 0
    fi
    gib_tenths=$((mem * 10 / 1073741824))
    if ((mem < MIN_DOCKER_MEMORY_GIB * 1073741824)); then
        report warn docker-memory "Docker memory" \
            "$((gib_tenths / 10)).$((gib_tenths % 10)) GiB; $MIN_DOCKER_MEMORY_GIB GiB or more is recommended for Istio, its addons and Bookinfo" \
            "$(docker_memory_fix)"
    else
        report ok docker-memory "Docker memory" "$((gib_tenths / 10)).$((gib_tenths % 10)) GiB"
    fi
}

kubectl_install_fix() {
    local version os="${OS:-linux}" arch="${ARCH:-amd64}"
    version="$(node_kubernetes_version)"
    if [[ "$os" == darwin ]]; then
        printf '%s\n' "brew install kubectl, or: curl -fLO https://dl.k8s.io/release/$version/bin/darwin/$arch/kubectl && sudo install -m 0755 kubectl /usr/local/bin/kubectl"
    else
        printf '%s\n' "curl -fLO https://dl.k8s.io/release/$version/bin/linux/$arch/kubectl && sudo install -m 0755 kubectl /usr/local/bin/kubectl"
    fi
}

# check_kubectl SERVER_VERSION: kubectl is there, and within one minor version of the cluster
# (kubectl's supported skew); SERVER_VERSION is e.g. v1.36.1, or empty when unknown.
check_kubectl() {
    local server="$1" out client="" client_minor server_minor skew
    local version_re='"gitVersion": *"(v[0-9]+\.([0-9]+)[^"]*)"'
    if ! have kubectl; then
        report fail kubectl "kubectl" "kubectl is not installed (not on PATH)" "$(kubectl_install_fix)"
        return 0
    fi
    out="$(kubectl version --client -o json 2>/dev/null || true)"
    if [[ "$out" =~ $version_re ]]; then
        client="${BASH_REMATCH[1]}" client_minor="${BASH_REMATCH[2]}"
    fi
    if [[ -z "$client" || -z "$server" ]]; then
        report ok kubectl "kubectl" "kubectl ${client:-(version unknown)}"
        return 0
    fi
    server_minor="${server#v*.}"
    server_minor="${server_minor%%.*}"
    skew=$((client_minor - server_minor))
    if ((skew < -1 || skew > 1)); then
        report warn kubectl "kubectl" \
            "kubectl $client is more than one minor version from the cluster's Kubernetes $server (kubectl supports one minor version of skew)" \
            "$(kubectl_install_fix)"
    else
        report ok kubectl "kubectl" "kubectl $client (the cluster runs Kubernetes $server)"
    fi
}

# check_tool ID COMMAND WHAT LINUX_FIX MACOS_FIX
check_tool() {
    local id="$1" command="$2" what="$3" fix="$4"
    if [[ "$OS" == darwin ]]; then
        fix="$5"
    fi
    if have "$command"; then
        report ok "$id" "$id" "$(command -v "$command")"
    else
        report fail "$id" "$id" "$command is not installed (not on PATH); it is needed to $what" "$fix"
    fi
}

sha256_fix() {
    if [[ "$OS" == darwin ]]; then
        printf '%s\n' "shasum comes with macOS (/usr/bin/shasum): put /usr/bin on PATH"
    else
        printf '%s\n' "sudo apt-get install coreutils (Fedora: sudo dnf install coreutils)"
    fi
}

check_sha256() {
    if have sha256sum; then
        report ok sha256 "sha256" "$(command -v sha256sum)"
    elif have shasum; then
        report ok sha256 "sha256" "$(command -v shasum) -a 256"
    else
        report fail sha256 "sha256" "neither sha256sum nor shasum is installed; one is needed to verify the downloads" "$(sha256_fix)"
    fi
}

check_download_tools() {
    check_tool curl curl "download kind and Istio" \
        "sudo apt-get install curl (Fedora: sudo dnf install curl)" "curl comes with macOS (/usr/bin/curl): put /usr/bin on PATH"
    check_tool tar tar "unpack the Istio release" \
        "sudo apt-get install tar (Fedora: sudo dnf install tar)" "tar comes with macOS (/usr/bin/tar): put /usr/bin on PATH"
    check_sha256
    check_tool git git "fetch the Gateway API CRDs (kubectl kustomize clones them with git)" \
        "sudo apt-get install git (Fedora: sudo dnf install git)" "xcode-select --install (or: brew install git)"
}

# Is anything listening on 127.0.0.1:PORT? A connection with bash's /dev/tcp answers without root.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# check_port CLUSTER_STATE: the host port kind publishes the ingress gateway on must be free,
# unless the course's cluster already holds it.
check_port() {
    local state="$1" port="$INGRESS_HOST_PORT"
    if ! port_in_use "$port"; then
        report ok port "host port $port" "127.0.0.1:$port is free for the ingress gateway"
    elif [[ "$state" == yes ]]; then
        report ok port "host port $port" "127.0.0.1:$port is held by the kind cluster $KIND_CLUSTER_NAME, as it should be"
    else
        report fail port "host port $port" \
            "something already listens on 127.0.0.1:$port, where the kind cluster publishes the ingress gateway" \
            "find it (lsof -nP -iTCP:$port -sTCP:LISTEN, or ss -ltnp 'sport = :$port') and stop it; or pick another free port and set it both as hostPort in $KIND_CONFIG and as INGRESS_HOST_PORT in versions.env"
    fi
}

# check_inotify ID TITLE SYSCTL MINIMUM: a Linux inotify limit, read from ISTIOLAB_PROC_SYS
# (default /proc/sys) so that tests can stand in for the kernel.
check_inotify() {
    local id="$1" title="$2" name="$3" minimum="$4" file value=""
    file="${ISTIOLAB_PROC_SYS:-/proc/sys}/fs/inotify/${name##*.}"
    if [[ "$OS" != linux ]]; then
        report skip "$id" "$title" "only Linux hosts need it (Docker Desktop's VM sets its own)"
        return 0
    fi
    if [[ -r "$file" ]]; then
        read -r value <"$file" || true
    fi
    if [[ ! "$value" =~ ^[0-9]+$ ]]; then
        report skip "$id" "$title" "cannot read $file"
    elif ((value < minimum)); then
        # A warning, not a failure: a small cluster may do with less, and this is the first thing
        # to fix when pods fail with "too many open files".
        report warn "$id" "$title" "$name is $value; kind needs $minimum or more, else pods may fail with 'too many open files'" \
            "sudo sysctl -w $name=$minimum, and to keep it after a reboot: echo $name=$minimum | sudo tee -a /etc/sysctl.d/99-kind.conf"
    else
        report ok "$id" "$title" "$value"
    fi
}

# check_context: the context named by --context exists and its cluster answers.
check_context() {
    local out status=0
    if ! have kubectl; then
        report skip context "context $CONTEXT" "needs kubectl"
        return 0
    fi
    if ! context_exists "$CONTEXT"; then
        report fail context "context $CONTEXT" "your kubeconfig has no context named '$CONTEXT'" \
            "list the contexts with: kubectl config get-contexts, and name one of them; or leave --context out to create the course's kind cluster"
        return 0
    fi
    out="$(kubectl --context "$CONTEXT" --request-timeout=10s get --raw /readyz 2>&1)" || status=$?
    if ((status != 0)); then
        report fail context "context $CONTEXT" "the cluster of context '$CONTEXT' does not answer: $(one_line "${out:0:160}")" \
            "check that the cluster is running and that this works: kubectl --context $CONTEXT get nodes"
    else
        report ok context "context $CONTEXT" "the cluster answers"
    fi
}

# run_checks: every prerequisite of the chosen target, one report line each.
run_checks() {
    local state=unknown server=""
    CHECKS_TOTAL=0 CHECKS_FAILED=0 CHECKS_WARNED=0
    check_os
    check_arch
    if ((USE_KIND)); then
        check_docker
        server="$(node_kubernetes_version)"
    fi
    check_kubectl "$server"
    check_download_tools
    if ((USE_KIND)); then
        state="$(kind_cluster_state "$KIND_CLUSTER_NAME")"
        check_port "$state"
        check_inotify inotify-watches "inotify watches" fs.inotify.max_user_watches "$MIN_INOTIFY_WATCHES"
        check_inotify inotify-instances "inotify instances" fs.inotify.max_user_instances "$MIN_INOTIFY_INSTANCES"
    else
        check_context
    fi
}

# The summary under a human report.
checks_summary() {
    if ((CHECKS_FAILED)); then
        printf '%d of %d checks failed: fix them and run scripts/cluster-up.sh --check again.\n' \
            "$CHECKS_FAILED" "$CHECKS_TOTAL"
    elif ((CHECKS_WARNED)); then
        printf 'All required checks passed (%d of %d with a warning).\n' "$CHECKS_WARNED" "$CHECKS_TOTAL"
    else
        printf 'All %d checks passed.\n' "$CHECKS_TOTAL"
    fi
}

# --- the repository's files ----------------------------------------------------------------------

# need_file PATH: a file or folder of the repository the plan uses. Missing in a real run: stop.
# Missing in a dry run: say so and go on, so that the rest of the plan can still be seen.
need_file() {
    if [[ -e "$1" ]]; then
        return 0
    fi
    if ((DRY_RUN)); then
        warn "$1 is missing; a real run would stop here."
        return 0
    fi
    die "$1 is missing from the repository." "restore it: git checkout -- $1"
}
