#!/usr/bin/env bash
#
# Build the Bookinfo container images: one image per build target of bookinfo/Dockerfile.
# Run `scripts/images.sh --help` for the options.
#
# Only bash builtins are used outside the docker and kind commands themselves (here and in
# scripts/lib/commands.sh, which it sources), so --list and --dry-run work on a machine without
# Docker, and the script runs on the bash 3.2 of macOS too.

set -o errexit -o nounset -o pipefail

readonly PROG="images.sh"
readonly DOCKERFILE="bookinfo/Dockerfile"
# Stages of the Dockerfile that other stages build on; every other stage is an image to build.
readonly INTERNAL_STAGES=" build runtime ratings-base "

LIST_ONLY=0
PUSH=0
PLATFORMS="${PLATFORMS:-}"
KIND_CLUSTER=""
IMAGE_PREFIX="${IMAGE_PREFIX:-}"
IMAGE_TAG="${IMAGE_TAG:-}"
REQUESTED=()
ALL_TARGETS=()
TARGETS=()

usage() {
    cat <<'EOF'
Usage: scripts/images.sh [OPTIONS] [TARGET...]

Build the Bookinfo images, one per target of bookinfo/Dockerfile (all of them unless TARGETs are
named), as ${IMAGE_PREFIX}<target>:${IMAGE_TAG}, by default the names the manifests use:
BOOKINFO_IMAGE_PREFIX and BOOKINFO_IMAGE_TAG in versions.env. The commands run from the
repository root.

Options:
  --platforms LIST     build for these platforms with docker buildx, e.g. linux/amd64,linux/arm64
                       (default: $PLATFORMS, or else a plain docker build for this machine).
                       A multi-platform image cannot be loaded into the local Docker: without
                       --push it stays in the build cache. Multi-platform builds also need a
                       builder that supports them: docker buildx create --use
  --push               push every image after building it
  --kind-cluster NAME  also load every image into the kind cluster NAME
  --dry-run            print the commands, one per line, and run nothing (needs no Docker)
  --list               print the build targets and exit
  -h, --help           show this help

Environment:
  IMAGE_PREFIX  image name before the target (default: BOOKINFO_IMAGE_PREFIX in versions.env)
  IMAGE_TAG     image tag (default: BOOKINFO_IMAGE_TAG in versions.env)
  PLATFORMS     default for --platforms
  DRY_RUN=1     same as --dry-run

Examples:
  scripts/images.sh --kind-cluster istiolab
  scripts/images.sh reviews-v2 reviews-v3
  IMAGE_PREFIX=ghcr.io/me/bookinfo- scripts/images.sh --platforms linux/amd64,linux/arm64 --push
EOF
}

# A mistake in the command line: say what, and exit 2.
usage_error() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    printf "Run 'scripts/images.sh --help' for the options.\n" >&2
    exit 2
}

# Something the build needs is missing: say what and how to fix it, and exit 1.
fail() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    if (($# > 1)); then
        printf 'fix: %s\n' "$2" >&2
    fi
    exit 1
}

parse_args() {
    while (($# > 0)); do
        case "$1" in
            -h | --help)
                usage
                exit 0
                ;;
            --dry-run) DRY_RUN=1 ;;
            --list) LIST_ONLY=1 ;;
            --push) PUSH=1 ;;
            --platforms)
                (($# > 1)) || usage_error "--platforms needs a value, e.g. linux/amd64,linux/arm64"
                PLATFORMS="$2"
                shift
                ;;
            --platforms=*) PLATFORMS="${1#*=}" ;;
            --kind-cluster)
                (($# > 1)) || usage_error "--kind-cluster needs the name of a kind cluster"
                KIND_CLUSTER="$2"
                shift
                ;;
            --kind-cluster=*) KIND_CLUSTER="${1#*=}" ;;
            --)
                shift
                REQUESTED+=("$@")
                break
                ;;
            -*) usage_error "unknown option '$1'" ;;
            *) REQUESTED+=("$1") ;;
        esac
        shift
    done
}

check_repo_root() {
    [[ -f "$DOCKERFILE" ]] || fail "cannot find $DOCKERFILE beside this script's directory."
}

# The Dockerfile's stages are the one list of targets: `FROM <base> AS <target>`.
load_targets() {
    local line stage
    local stage_re='^FROM[[:space:]].*[[:space:]][Aa][Ss][[:space:]]+([A-Za-z0-9._-]+)[[:space:]]*$'
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ $stage_re ]]; then
            stage="${BASH_REMATCH[1]}"
            if [[ "$INTERNAL_STAGES" != *" $stage "* ]]; then
                ALL_TARGETS+=("$stage")
            fi
        fi
    done <"$DOCKERFILE"
    ((${#ALL_TARGETS[@]} > 0)) || fail "found no build targets in $DOCKERFILE."
}

is_target() {
    local candidate
    for candidate in "${ALL_TARGETS[@]}"; do
        [[ "$candidate" == "$1" ]] && return 0
    done
    return 1
}

select_targets() {
    local name
    if ((${#REQUESTED[@]} == 0)); then
        TARGETS=("${ALL_TARGETS[@]}")
        return
    fi
    for name in "${REQUESTED[@]}"; do
        is_target "$name" ||
            usage_error "unknown target '$name'; the targets are: ${ALL_TARGETS[*]}"
        TARGETS+=("$name")
    done
}

# The value of KEY in versions.env, the course's one list of pins (plain KEY=value lines).
pinned() {
    local line
    [[ -f versions.env ]] || return 1
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" == "$1="?* ]]; then
            printf '%s\n' "${line#*=}"
            return 0
        fi
    done <versions.env
    return 1
}

is_multi_platform() {
    [[ "$PLATFORMS" == *,* ]]
}

check_options() {
    if [[ -n "$KIND_CLUSTER" ]] && is_multi_platform; then
        usage_error "--kind-cluster loads images from the local Docker, which cannot hold a multi-platform image; build for one platform (e.g. --platforms linux/amd64) or leave --platforms out"
    fi
}

check_prerequisites() {
    local cluster found=0
    if ! command -v docker >/dev/null 2>&1; then
        fail "docker is not installed or not on PATH." \
            "install Docker Engine (https://docs.docker.com/engine/install/) or Docker Desktop and put 'docker' on PATH; 'scripts/images.sh --dry-run' prints the commands without it."
    fi
    if ! docker info >/dev/null 2>&1; then
        fail "the Docker daemon is not reachable ('docker info' failed)." \
            "start it ('sudo systemctl start docker', or open Docker Desktop), or point DOCKER_HOST at a running one, then run this again."
    fi
    if [[ -n "$PLATFORMS" ]] && ! docker buildx version >/dev/null 2>&1; then
        fail "--platforms needs docker buildx, which is not installed." \
            "install the Docker buildx plugin (Debian/Ubuntu: apt-get install docker-buildx-plugin), or leave --platforms out to build for this machine."
    fi
    if [[ -n "$KIND_CLUSTER" ]]; then
        if ! command -v kind >/dev/null 2>&1; then
            fail "--kind-cluster needs kind, which is not installed or not on PATH." \
                "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation), or leave --kind-cluster out."
        fi
        while IFS= read -r cluster; do
            if [[ "$cluster" == "$KIND_CLUSTER" ]]; then
                found=1
            fi
        done < <(kind get clusters 2>/dev/null)
        if ((!found)); then
            fail "there is no kind cluster named '$KIND_CLUSTER'." \
                "create it with 'kind create cluster --name $KIND_CLUSTER', or name an existing one (kind get clusters)."
        fi
    fi
}

build_one() {
    local target="$1"
    local image="${IMAGE_PREFIX}${target}:${IMAGE_TAG}"
    local -a build
    if [[ -n "$PLATFORMS" ]]; then
        build=(docker buildx build --platform "$PLATFORMS")
    else
        build=(docker build)
    fi
    build+=(-f "$DOCKERFILE" --target "$target" --build-arg "IMAGE_VERSION=$IMAGE_TAG" -t "$image")
    if [[ -n "$PLATFORMS" ]]; then
        if ((PUSH)); then
            build+=(--push)
        fi
        # One platform fits the local Docker: load it there, as a plain docker build would.
        if ! is_multi_platform && { ((!PUSH)) || [[ -n "$KIND_CLUSTER" ]]; }; then
            build+=(--load)
        fi
    fi
    build+=(.)
    run "${build[@]}"
    if ((PUSH)) && [[ -z "$PLATFORMS" ]]; then
        run docker push "$image"
    fi
    if [[ -n "$KIND_CLUSTER" ]]; then
        run kind load docker-image "$image" --name "$KIND_CLUSTER"
    fi
}

summary() {
    local count="${#TARGETS[@]}" what="images" where=""
    if ((count == 1)); then
        what="image"
    fi
    if [[ -n "$PLATFORMS" ]]; then
        where+=" for $PLATFORMS"
    fi
    if ((PUSH)); then
        where+=", pushed"
    elif is_multi_platform; then
        where+=", kept in the build cache only (add --push to publish them)"
    fi
    if [[ -n "$KIND_CLUSTER" ]]; then
        where+=", loaded into kind cluster $KIND_CLUSTER"
    fi
    if ((DRY_RUN)); then
        printf 'Dry run, nothing was built: would build %s %s %s<target>:%s%s: %s\n' \
            "$count" "$what" "$IMAGE_PREFIX" "$IMAGE_TAG" "$where" "${TARGETS[*]}"
    else
        printf 'Built %s %s %s<target>:%s%s: %s\n' \
            "$count" "$what" "$IMAGE_PREFIX" "$IMAGE_TAG" "$where" "${TARGETS[*]}"
    fi
}

main() {
    local target
    dry_run_from_env
    parse_args "$@"
    check_repo_root
    load_targets
    if ((LIST_ONLY)); then
        printf '%s\n' "${ALL_TARGETS[@]}"
        return 0
    fi
    select_targets
    check_options
    if [[ -z "$IMAGE_PREFIX" ]]; then
        IMAGE_PREFIX="$(pinned BOOKINFO_IMAGE_PREFIX)" ||
            fail "versions.env has no BOOKINFO_IMAGE_PREFIX." "restore it (git checkout -- versions.env), or set IMAGE_PREFIX."
    fi
    if [[ -z "$IMAGE_TAG" ]]; then
        IMAGE_TAG="$(pinned BOOKINFO_IMAGE_TAG)" ||
            fail "versions.env has no BOOKINFO_IMAGE_TAG." "restore it (git checkout -- versions.env), or set IMAGE_TAG."
    fi
    if ((!DRY_RUN)); then
        check_prerequisites
    fi
    if is_multi_platform && ((!PUSH)); then
        printf '%s: note: a multi-platform image cannot be --load-ed into the local Docker; without --push these builds stay in the build cache.\n' "$PROG" >&2
    fi
    for target in "${TARGETS[@]}"; do
        build_one "$target"
    done
    summary
}

# Run from the repository root: this script's path without its name ("" when run from scripts/),
# then one folder up.
cd "${BASH_SOURCE[0]%"${BASH_SOURCE[0]##*/}"}.."
# run and the shell-quoting of the "+ command" lines it prints.
# shellcheck source=scripts/lib/commands.sh
source scripts/lib/commands.sh
main "$@"
