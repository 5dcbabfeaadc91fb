#!/usr/bin/env bash
#
# Take down what scripts/cluster-up.sh made.
#
#   - the course's kind cluster: delete it (nothing to do when it does not exist);
#   - with --context and --allow-other-context, an existing cluster: delete Bookinfo, the addons and
#     Istio from it, and leave the cluster itself, and its Gateway API CRDs, in place.
#
# The downloads in .bin/ stay, so the next cluster-up.sh needs no network for them; add
# --delete-downloads to remove them too. Run `scripts/cluster-down.sh --help` for the options.

set -o errexit -o nounset -o pipefail

PROG="cluster-down.sh"
DELETE_DOWNLOADS=0

usage() {
    cat <<'EOF'
Usage: scripts/cluster-down.sh [OPTIONS]

Delete the course's kind cluster (kind-istiolab). Safe to run again: when the cluster does not
exist there is nothing to do.

Options:
  --context NAME          the context scripts/cluster-up.sh --context installed into (default:
                          $KUBE_CONTEXT). That cluster is not deleted: Bookinfo (every stage), the
                          addons and Istio are deleted from it. Needs --allow-other-context.
  --allow-other-context   let --context name a context other than the course's kind-istiolab; the
                          script refuses to change any other cluster without it
  --keep-downloads        keep kind and Istio in .bin/ for the next cluster-up.sh (the default)
  --delete-downloads      delete .bin/ as well
  --dry-run               print each command that would change something, as "+ command", and run
                          none of them
  -h, --help              show this help

Environment:
  DRY_RUN=1               same as --dry-run
  KUBE_CONTEXT            same as --context
  KIND_CLUSTER_NAME       the kind cluster's name (default: versions.env, istiolab)

Exit status: 0 done (or nothing to do), 1 a step failed, 2 bad command line, 3 refused to change
a context that is not the course's.
EOF
}

# The options only this script takes; parse_args in scripts/lib/cluster.sh reads the others.
script_option() {
    case "$1" in
        --keep-downloads) DELETE_DOWNLOADS=0 ;;
        --delete-downloads) DELETE_DOWNLOADS=1 ;;
        *) unknown_option "$1" ;;
    esac
}

step_delete_kind_cluster() {
    local state kind
    step "Deleting the kind cluster $KIND_CLUSTER_NAME"
    state="$(kind_cluster_state "$KIND_CLUSTER_NAME")"
    if [[ "$state" == no ]]; then
        say "    there is no kind cluster named $KIND_CLUSTER_NAME: nothing to delete"
        return 0
    fi
    if [[ "$state" == unknown ]]; then
        if ! have docker && [[ -z "$(kind_for_reading)" ]]; then
            say "    neither Docker nor kind is installed, so there is no kind cluster to delete"
            return 0
        fi
        if ((!DRY_RUN)); then
            die "cannot tell whether the kind cluster $KIND_CLUSTER_NAME exists: the Docker daemon does not answer." \
                "$(docker_start_fix)"
        fi
        say "    (cannot tell whether it exists: the Docker daemon does not answer; a real run needs it)"
    fi
    kind="$(kind_for_reading)"
    if [[ -z "$kind" ]]; then
        require_platform
        ensure_kind
        kind="$(kind_path)"
    fi
    run "$kind" delete cluster --name "$KIND_CLUSTER_NAME"
}

# Every stage, the latest first: a stage is a complete state, so together they name everything
# the labs can have applied.
stage_dirs_latest_first() {
    local -a dirs=()
    local dir i
    for dir in manifests/stages/*/; do
        if [[ -f "${dir}kustomization.yaml" ]]; then
            dirs+=("${dir%/}")
        fi
    done
    for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
        printf '%s\n' "${dirs[i]}"
    done
}

uninstall_from_context() {
    local dir addon addons_dir
    local -a files=()
    step "Downloading Istio $ISTIO_VERSION (istioctl and the addons, to know what to delete)"
    require_platform
    ensure_istio
    step "Deleting Bookinfo (every stage)"
    while IFS= read -r dir; do
        [[ -n "$dir" ]] || continue
        if ! run kubectl --context "$CONTEXT" delete -k "$dir" --ignore-not-found; then
            warn "could not delete all of $dir (see above); carrying on."
        fi
    done < <(stage_dirs_latest_first)
    step "Deleting the addons: Prometheus, Jaeger, Kiali, Grafana"
    addons_dir="$(istio_dir)/samples/addons"
    for addon in $ADDONS; do
        files+=(-f "$addons_dir/$addon.yaml")
    done
    run kubectl --context "$CONTEXT" delete "${files[@]}" --ignore-not-found
    step "Uninstalling Istio $ISTIO_VERSION"
    run kubectl --context "$CONTEXT" delete -f "$ISTIO_TELEMETRY" --ignore-not-found
    run "$(istioctl_path)" uninstall --context "$CONTEXT" -y -f "$ISTIO_OPERATOR"
    say "    the Gateway API CRDs stay: other software on that cluster may use them. To delete them:"
    say "    kubectl kustomize 'github.com/kubernetes-sigs/gateway-api/config/crd?ref=${GATEWAY_API_VERSION:-<version>}' | kubectl --context $CONTEXT delete -f -"
}

main() {
    setup "$@"
    guard_context "delete Bookinfo, the addons and Istio from that cluster (the cluster itself would stay)"
    if ((USE_KIND)); then
        STEPS=$((1 + DELETE_DOWNLOADS))
    else
        STEPS=$((4 + DELETE_DOWNLOADS))
    fi
    announce_dry_run
    if ((USE_KIND)); then
        step_delete_kind_cluster
    else
        uninstall_from_context
    fi
    if ((DELETE_DOWNLOADS)); then
        step "Deleting the downloads in $BIN_DIR/"
        run rm -rf "$BIN_DIR"
    else
        say "The downloads stay in $BIN_DIR/ (kind $KIND_VERSION, Istio $ISTIO_VERSION) for the next scripts/cluster-up.sh; --delete-downloads removes them."
    fi
    if ((DRY_RUN)); then
        say "Dry run: nothing was changed."
    fi
}

# Run from the repository root: this script's path without its name ("" when run from scripts/),
# then one folder up.
cd "${BASH_SOURCE[0]%"${BASH_SOURCE[0]##*/}"}.."
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
main "$@"
