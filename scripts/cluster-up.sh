#!/usr/bin/env bash
#
# The course on a real cluster: create the kind cluster and put in it everything the labs use.
#
#   1. check the prerequisites, each failure with its exact fix (--check does only this)
#   2. download the pinned kind and Istio release into .bin/, each checked against its SHA-256
#   3. create the kind cluster (pinned node image, localhost:8080 -> the gateway's NodePort)
#   4. install the Gateway API CRDs, Istio with istioctl, and the Prometheus, Jaeger, Kiali and
#      Grafana addons of the same Istio release
#   5. build the Bookinfo images and load them into kind
#   6. deploy Bookinfo as stage 00 (no mesh yet)
#
# Every step can run again: what is already there is kept. Every version is pinned in versions.env.
# With --context, parts 3 and 5 of this list are left out and everything goes into an existing
# cluster. The script numbers its steps as it goes ("[4/9] ...").
# Run `scripts/cluster-up.sh --help` for the options.

set -o errexit -o nounset -o pipefail

PROG="cluster-up.sh"
CHECK_ONLY=0
SKIP_IMAGES=0

usage() {
    cat <<'EOF'
Usage: scripts/cluster-up.sh [OPTIONS]

Create the course's kind cluster (kind-istiolab) with Istio, its addons and Bookinfo, using the
versions pinned in versions.env. Safe to run again: what is already there is kept.

Options:
  --check                 only check the prerequisites: one line per check, with the fix for each
                          failure; exit 1 if any check fails. Changes nothing.
  --format human|plain    how --check prints (default: human). plain is one line per check,
                          "STATUS<TAB>CHECK<TAB>DETAIL<TAB>FIX", STATUS being ok, warn, fail or skip.
  --context NAME          install into the existing cluster of kubectl context NAME instead of
                          creating the kind cluster (default: $KUBE_CONTEXT). The Bookinfo images
                          are then not built or loaded: the script says how to do it.
  --allow-other-context   let --context name a context other than the course's kind-istiolab; the
                          script refuses to change any other cluster without it
  --skip-images           do not build and load the Bookinfo images (they are already in kind)
  --dry-run               print each command that would change something, as "+ command", and run
                          none of them; the checks and other read-only commands still run
  -h, --help              show this help

Environment:
  DRY_RUN=1               same as --dry-run
  KUBE_CONTEXT            same as --context
  KIND_CLUSTER_NAME       the kind cluster's name (default: versions.env, istiolab)
  INGRESS_HOST_PORT       the host port of the ingress gateway (default: versions.env, 8080); it
                          must match hostPort in manifests/kind/cluster.yaml
  ISTIOLAB_PROC_SYS       where the inotify limits are read (default: /proc/sys)

Exit status: 0 done, 1 a check or a step failed, 2 bad command line, 3 refused to change a
context that is not the course's.

Examples:
  scripts/cluster-up.sh --check
  scripts/cluster-up.sh
  scripts/cluster-up.sh --dry-run
  scripts/cluster-up.sh --context my-cluster --allow-other-context
EOF
}

set_format() {
    case "$1" in
        human | plain) REPORT_FORMAT="$1" ;;
        *) usage_error "--format must be human or plain, not '$1'" ;;
    esac
}

# The options only this script takes; parse_args in scripts/lib/cluster.sh reads the others.
script_option() {
    case "$1" in
        --check) CHECK_ONLY=1 ;;
        --format)
            (($# > 1)) || usage_error "--format needs a value: human or plain"
            set_format "$2"
            OPTION_WORDS=2
            ;;
        --format=*) set_format "${1#*=}" ;;
        --skip-images) SKIP_IMAGES=1 ;;
        *) unknown_option "$1" ;;
    esac
}

# --check: the report alone, then exit 1 if any check failed.
check_only() {
    if [[ "$REPORT_FORMAT" == human ]]; then
        if ((USE_KIND)); then
            say "Prerequisites of the kind cluster $KIND_CLUSTER_NAME (scripts/cluster-up.sh):"
        else
            say "Prerequisites of installing into context $CONTEXT (scripts/cluster-up.sh --context):"
        fi
    fi
    run_checks
    if [[ "$REPORT_FORMAT" == human ]]; then
        checks_summary
    fi
    if ((CHECKS_FAILED)); then
        exit 1
    fi
}

step_prerequisites() {
    step "Checking the prerequisites"
    run_checks
    if ((!CHECKS_FAILED)); then
        return 0
    fi
    if ((DRY_RUN)); then
        warn "$CHECKS_FAILED of $CHECKS_TOTAL prerequisite checks failed (see above): a real run would stop here. The rest of the plan follows."
        return 0
    fi
    die "$CHECKS_FAILED of $CHECKS_TOTAL prerequisite checks failed (see above); nothing was changed." \
        "do what each failed line says, then run scripts/cluster-up.sh again (scripts/cluster-up.sh --check checks without changing anything)."
}

# A mismatch between versions.env and the kind config: fatal in a real run, a warning in a dry run.
mismatch() {
    if ((DRY_RUN)); then
        warn "$1; a real run would stop here."
    else
        die "$1." "$2"
    fi
}

# The kind config publishes INGRESS_NODE_PORT on INGRESS_HOST_PORT, as versions.env says.
check_kind_config() {
    local line host="" container=""
    [[ -f "$KIND_CONFIG" ]] || return 0
    while IFS= read -r line || [[ -n "$line" ]]; do
        case "$line" in
            *"#"*) line="${line%%#*}" ;;
        esac
        case "$line" in
            *hostPort:*) host="${line#*hostPort:}" ;;
            *containerPort:*) container="${line#*containerPort:}" ;;
        esac
    done <"$KIND_CONFIG"
    host="${host//[!0-9]/}" container="${container//[!0-9]/}"
    if [[ -n "$host" && "$host" != "$INGRESS_HOST_PORT" ]]; then
        mismatch "INGRESS_HOST_PORT is $INGRESS_HOST_PORT but $KIND_CONFIG publishes host port $host" \
            "use the same port in both: hostPort in $KIND_CONFIG and INGRESS_HOST_PORT (versions.env, or the environment)."
    fi
    if [[ -n "$container" && "$container" != "$INGRESS_NODE_PORT" ]]; then
        mismatch "INGRESS_NODE_PORT is $INGRESS_NODE_PORT in versions.env but $KIND_CONFIG maps container port $container" \
            "use the same NodePort in versions.env, $KIND_CONFIG and $ISTIO_OPERATOR."
    fi
}

# A cluster made some other way may lack the port mapping: then localhost cannot reach the gateway.
check_existing_port_mapping() {
    local bindings
    have docker || return 0
    bindings="$(docker inspect --format '{{range $p, $b := .HostConfig.PortBindings}}{{$p}}={{range $b}}{{.HostPort}} {{end}}{{end}}' \
        "$KIND_CLUSTER_NAME-control-plane" 2>/dev/null)" || return 0
    if [[ " $bindings" != *" $INGRESS_NODE_PORT/tcp=$INGRESS_HOST_PORT "* ]]; then
        warn "the kind cluster $KIND_CLUSTER_NAME does not publish NodePort $INGRESS_NODE_PORT on localhost:$INGRESS_HOST_PORT (it was not created from $KIND_CONFIG), so http://localhost:$INGRESS_HOST_PORT will not reach the gateway. To recreate it: scripts/cluster-down.sh && scripts/cluster-up.sh"
    fi
}

step_create_cluster() {
    step "Creating the kind cluster $KIND_CLUSTER_NAME (Kubernetes $(node_kubernetes_version))"
    if [[ "$(kind_cluster_state "$KIND_CLUSTER_NAME")" == yes ]]; then
        say "    the kind cluster $KIND_CLUSTER_NAME already exists: keeping it"
        check_existing_port_mapping
        return 0
    fi
    need_file "$KIND_CONFIG"
    check_kind_config
    run "$(kind_path)" create cluster --name "$KIND_CLUSTER_NAME" --image "$KIND_NODE_IMAGE" \
        --config "$KIND_CONFIG" --wait 120s
}

step_gateway_api() {
    local installed
    step "Installing the Gateway API CRDs ${GATEWAY_API_VERSION:-(no version pinned)}"
    if [[ -z "$GATEWAY_API_VERSION" ]]; then
        if ((DRY_RUN)); then
            warn "versions.env has no GATEWAY_API_VERSION; a real run would stop here."
            return 0
        fi
        die "versions.env has no GATEWAY_API_VERSION." "restore it: git checkout -- versions.env"
    fi
    installed="$(gateway_api_installed)"
    if [[ "$installed" == "$GATEWAY_API_VERSION" ]]; then
        say "    already installed at $GATEWAY_API_VERSION"
        return 0
    fi
    if [[ -n "$installed" ]] && ((!USE_KIND)); then
        warn "the cluster of context '$CONTEXT' has the Gateway API CRDs $installed, and the course is tested with $GATEWAY_API_VERSION; leaving them as they are, since other software there may rely on them."
        return 0
    fi
    run_pipe kubectl kustomize "github.com/kubernetes-sigs/gateway-api/config/crd?ref=$GATEWAY_API_VERSION" \
        '|' kubectl --context "$CONTEXT" apply -f -
    run kubectl --context "$CONTEXT" wait --for=condition=Established --timeout=60s \
        crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io
}

step_istio() {
    step "Installing Istio $ISTIO_VERSION"
    need_file "$ISTIO_OPERATOR"
    need_file "$ISTIO_TELEMETRY"
    run "$(istioctl_path)" install --context "$CONTEXT" -y -f "$ISTIO_OPERATOR"
    run kubectl --context "$CONTEXT" apply -f "$ISTIO_TELEMETRY"
}

step_addons() {
    local addon dir
    local -a files=()
    step "Installing the addons of Istio $ISTIO_VERSION: Prometheus, Jaeger, Kiali, Grafana"
    dir="$(istio_dir)/samples/addons"
    for addon in $ADDONS; do
        files+=(-f "$dir/$addon.yaml")
    done
    run kubectl --context "$CONTEXT" apply "${files[@]}"
    if ! run kubectl --context "$CONTEXT" -n istio-system wait --for=condition=Available deployment --all \
        --timeout="$WAIT_TIMEOUT"; then
        die "Istio or an addon did not become ready within $WAIT_TIMEOUT." \
            "see which and why: kubectl --context $CONTEXT -n istio-system get pods, then kubectl --context $CONTEXT -n istio-system describe pod <name>; then run this again."
    fi
}

step_images() {
    local line
    step "Building the Bookinfo images ($BOOKINFO_IMAGE_PREFIX<target>:$BOOKINFO_IMAGE_TAG) and loading them into kind"
    # images.sh tags the images as versions.env says, which is what the manifests use, and finds
    # the pinned kind first on PATH.
    if [[ -n "${IMAGE_PREFIX:-}${IMAGE_TAG:-}${PLATFORMS:-}" ]]; then
        note "ignoring IMAGE_PREFIX, IMAGE_TAG and PLATFORMS from the environment: the manifests use the images versions.env names."
    fi
    unset IMAGE_PREFIX IMAGE_TAG PLATFORMS
    PATH="$PWD/$BIN_DIR/kind-$KIND_VERSION:$PATH"
    export PATH
    run scripts/images.sh --kind-cluster "$KIND_CLUSTER_NAME"
    if ((DRY_RUN)); then
        scripts/images.sh --dry-run --kind-cluster "$KIND_CLUSTER_NAME" | while IFS= read -r line; do
            printf '    %s\n' "$line"
        done
    fi
}

# With --context, the images are the learner's to provide: say how.
images_note() {
    local kind_cluster
    kind_cluster="$(kind_context_cluster "$CONTEXT")"
    say "    Bookinfo's images are not built or loaded for context $CONTEXT; its pods start once the"
    say "    cluster can get $BOOKINFO_IMAGE_PREFIX<target>:$BOOKINFO_IMAGE_TAG:"
    if [[ -n "$kind_cluster" ]]; then
        say "      a kind cluster: scripts/images.sh --kind-cluster $kind_cluster"
    fi
    say "      any cluster: push them to a registry it pulls from, e.g."
    say "        IMAGE_PREFIX=registry.example.com/you/examples-bookinfo- scripts/images.sh --push"
    say "      and point the stage at them with an images: entry (newName) per image in"
    say "      $BOOKINFO_STAGE/kustomization.yaml"
}

BOOKINFO_NAMESPACE=""

step_bookinfo() {
    local deployments ns line_ns name namespaces="" productpage_ns=""
    local -a targets
    step "Deploying Bookinfo (stage 00: no mesh yet)"
    need_file "$BOOKINFO_STAGE"
    run kubectl --context "$CONTEXT" apply -k "$BOOKINFO_STAGE"
    deployments="$(kustomization_deployments "$BOOKINFO_STAGE")"
    while read -r ns name; do
        [[ -n "$name" ]] || continue
        if [[ " $namespaces " != *" $ns "* ]]; then
            namespaces="${namespaces:+$namespaces }$ns"
        fi
        if [[ "$name" == productpage* && -z "$productpage_ns" ]]; then
            productpage_ns="$ns"
        fi
    done <<<"$deployments"
    BOOKINFO_NAMESPACE="${productpage_ns:-default}"
    for ns in $namespaces; do
        targets=()
        while read -r line_ns name; do
            if [[ "$line_ns" == "$ns" && -n "$name" ]]; then
                targets+=("deployment/$name")
            fi
        done <<<"$deployments"
        if ((${#targets[@]} == 0)); then
            continue
        fi
        if ! run kubectl --context "$CONTEXT" -n "$ns" wait --for=condition=Available --timeout="$WAIT_TIMEOUT" \
            "${targets[@]}"; then
            die "Bookinfo did not become ready within $WAIT_TIMEOUT." \
                "see why: kubectl --context $CONTEXT -n $ns get pods, then kubectl --context $CONTEXT -n $ns describe pod <name>. ErrImagePull or ImagePullBackOff means the cluster lacks the images: scripts/images.sh --kind-cluster $KIND_CLUSTER_NAME (kind), then run this again."
        fi
    done
}

finish() {
    local namespace="" where
    if [[ "$BOOKINFO_NAMESPACE" != default && -n "$BOOKINFO_NAMESPACE" ]]; then
        namespace=" -n $BOOKINFO_NAMESPACE"
    fi
    if ((USE_KIND)); then
        where="Bookinfo is running. After the gateway lab it will be at http://localhost:$INGRESS_HOST_PORT/productpage; until then: kubectl --context $CONTEXT$namespace port-forward svc/productpage 9080:9080"
    else
        where="Bookinfo is running in context $CONTEXT. To open it: kubectl --context $CONTEXT$namespace port-forward svc/productpage 9080:9080, then http://localhost:9080/productpage"
    fi
    say ""
    say "istioctl $ISTIO_VERSION for the labs is $(istioctl_path); to call it as istioctl:"
    say "  export PATH=\"\$PWD/$(istio_dir)/bin:\$PATH\""
    if ((DRY_RUN)); then
        say "Dry run: nothing was changed. A real run ends with:"
        say "  $where"
    else
        say "$where"
    fi
}

main() {
    setup "$@"
    if ((CHECK_ONLY)); then
        check_only
        return 0
    fi
    guard_context "install the Gateway API CRDs, Istio $ISTIO_VERSION, its addons and Bookinfo into that cluster, changing what is there"
    if ((USE_KIND)); then
        STEPS=$((9 - SKIP_IMAGES))
    else
        STEPS=6
    fi
    announce_dry_run
    step_prerequisites
    if ((USE_KIND)); then
        step "Downloading kind $KIND_VERSION"
        ensure_kind
    fi
    step "Downloading Istio $ISTIO_VERSION (istioctl and the addons)"
    ensure_istio
    if ((USE_KIND)); then
        step_create_cluster
    fi
    step_gateway_api
    step_istio
    step_addons
    if ((!USE_KIND)); then
        images_note
    elif ((!SKIP_IMAGES)); then
        step_images
    fi
    step_bookinfo
    finish
}

# Run from the repository root: this script's path without its name ("" when run from scripts/),
# then one folder up.
cd "${BASH_SOURCE[0]%"${BASH_SOURCE[0]##*/}"}.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
main "$@"
