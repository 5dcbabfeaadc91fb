"""Workloads from kubectl's JSON: the pods a Deployment owns, their restarts, their sidecars."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..base import Workload
from .layout import MESH_NAMESPACE, SIDECAR


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels and matchExpressions) selects `labels`."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _sidecar_init_containers(pod: Mapping[str, Any]) -> set[str]:
    """Names of a pod's native sidecars: init containers with restartPolicy Always."""
    spec = pod.get("spec") or {}
    return {
        container.get("name", "")
        for container in spec.get("initContainers") or []
        if container.get("restartPolicy") == "Always"
    }


def pod_has_sidecar(pod: Mapping[str, Any]) -> bool:
    """Whether the pod runs Istio's proxy, as a container or as a native sidecar init container."""
    spec = pod.get("spec") or {}
    containers = {container.get("name") for container in spec.get("containers") or []}
    return SIDECAR in containers or SIDECAR in _sidecar_init_containers(pod)


def pod_restarts(pod: Mapping[str, Any]) -> int:
    """Restarts as kubectl's RESTARTS column counts them: containers plus native sidecars."""
    status = pod.get("status") or {}
    restarts = sum(int(s.get("restartCount", 0)) for s in status.get("containerStatuses") or [])
    sidecars = _sidecar_init_containers(pod)
    restarts += sum(
        int(s.get("restartCount", 0))
        for s in status.get("initContainerStatuses") or []
        if s.get("name") in sidecars
    )
    return restarts


def parse_workloads(deployments: Mapping[str, Any], pods: Mapping[str, Any]) -> list[Workload]:
    """Workloads from `kubectl get deployments -o json` and `kubectl get pods -o json`.

    A Deployment's pods are those its selector picks in its namespace, leaving out pods already
    being deleted. It has a sidecar when every one of them does (and there is at least one).
    """
    live_pods = [
        pod
        for pod in pods.get("items") or []
        if not pod.get("metadata", {}).get("deletionTimestamp")
    ]
    workloads = []
    for deployment in deployments.get("items") or []:
        metadata = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        template = spec.get("template") or {}
        pod_spec = template.get("spec") or {}
        namespace = metadata.get("namespace", MESH_NAMESPACE)
        selector = spec.get("selector") or {}
        owned = [
            pod
            for pod in live_pods
            if pod.get("metadata", {}).get("namespace", namespace) == namespace
            and selector_matches(selector, pod.get("metadata", {}).get("labels") or {})
        ]
        workloads.append(
            Workload(
                name=metadata.get("name", ""),
                namespace=namespace,
                labels=dict((template.get("metadata") or {}).get("labels") or {}),
                service_account=(
                    pod_spec.get("serviceAccountName")
                    or pod_spec.get("serviceAccount")
                    or "default"
                ),
                replicas=int(spec.get("replicas", 1)),
                ready=int((deployment.get("status") or {}).get("readyReplicas", 0)),
                restarts=sum(pod_restarts(pod) for pod in owned),
                has_sidecar=bool(owned) and all(pod_has_sidecar(pod) for pod in owned),
            )
        )
    return sorted(workloads, key=lambda workload: (workload.namespace, workload.name))
