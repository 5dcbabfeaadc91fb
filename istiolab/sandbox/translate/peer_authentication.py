"""The mTLS mode of a workload's port, composed from PeerAuthentication policies as istiod does.

istiod (pilot/pkg/security/authn/policy_applier.go, ComposePeerAuthentication) looks at three
scopes and lets the narrowest one that says something win:

- mesh-wide: a policy in the root namespace (istio-system) without a selector;
- namespace-wide: a policy without a selector in the workload's namespace;
- workload: a policy in the workload's namespace whose `selector.matchLabels` the workload's
  labels contain. A policy *with* a selector in the root namespace is ignored altogether (istio.io
  PeerAuthentication reference: "policies with workload selectors are ignored when deployed in
  the root namespace"), even for workloads that live there.

Each scope keeps one policy, the oldest (by creationTimestamp, then name: istiod sorts with
sortConfigByCreationTime and keeps the first). A mode of UNSET, or none, inherits the parent
scope's mode; with no policy at all the mode is PERMISSIVE. `portLevelMtls` counts only on the
workload policy and is keyed by the workload's (container) port, not the Service port.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .hosts import name_of, namespace_of

MESH_ROOT_NAMESPACE = "istio-system"

STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"
DISABLE = "DISABLE"
UNSET = "UNSET"


@dataclass(frozen=True)
class EffectiveMode:
    """A port's mode and the PeerAuthentication that decided it (None: Istio's default)."""

    mode: str
    decided_by: Mapping[str, Any] | None = None


def mtls_mode(
    policies: Sequence[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    port: int | None = None,
    *,
    root_namespace: str = MESH_ROOT_NAMESPACE,
) -> str:
    """The effective mTLS mode ("STRICT" | "PERMISSIVE" | "DISABLE") of a workload's port, as
    istiod composes PeerAuthentication (ComposePeerAuthentication)."""
    return effective_mode(policies, namespace, labels, port, root_namespace=root_namespace).mode


def effective_mode(
    policies: Sequence[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    port: int | None = None,
    *,
    root_namespace: str = MESH_ROOT_NAMESPACE,
) -> EffectiveMode:
    """Like `mtls_mode`, and also which policy decided, for explaining the result."""
    # The oldest policy of each scope, or None.
    mesh: Mapping[str, Any] | None = None
    namespace_wide: Mapping[str, Any] | None = None
    workload: Mapping[str, Any] | None = None
    for policy in oldest_first(policies):
        policy_namespace = namespace_of(policy)
        selector = _match_labels(policy)
        if not selector:  # no selector, or an empty one: mesh- or namespace-wide
            if policy_namespace == root_namespace:
                mesh = mesh or policy
            elif policy_namespace == namespace:
                namespace_wide = namespace_wide or policy
        elif policy_namespace == namespace != root_namespace and _selects(selector, labels):
            # A selector in the root namespace selects nothing (see the module docstring).
            workload = workload or policy

    result = EffectiveMode(PERMISSIVE)
    for policy in (mesh, namespace_wide, workload):
        if policy is not None and (mode := _mode((policy.get("spec") or {}).get("mtls"))):
            result = EffectiveMode(mode, policy)
    if workload is not None and port is not None:
        port_level = (workload.get("spec") or {}).get("portLevelMtls") or {}
        # YAML may give the key as a number or as a string; an UNSET port keeps the workload's.
        entry = port_level.get(port, port_level.get(str(port)))
        if mode := _mode(entry):
            result = EffectiveMode(mode, workload)
    return result


def oldest_first(resources: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """istiod's order (sortConfigByCreationTime): creation time, then name, then namespace.

    A resource without a creationTimestamp counts as the oldest, as Go's zero time does.
    """
    return sorted(resources, key=lambda r: (_created(r), name_of(r), namespace_of(r)))


def _created(resource: Mapping[str, Any]) -> str:
    created = (resource.get("metadata") or {}).get("creationTimestamp")
    if isinstance(created, dt.datetime):  # YAML reads an unquoted timestamp as a datetime
        created = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(created or "")


def _match_labels(policy: Mapping[str, Any]) -> Mapping[str, str]:
    selector = (policy.get("spec") or {}).get("selector") or {}
    return selector.get("matchLabels") or {}


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _mode(mtls: Mapping[str, Any] | None) -> str | None:
    """The mode an `mtls` block sets, None when it leaves it to the parent scope (UNSET)."""
    mode = str((mtls or {}).get("mode") or UNSET).upper()
    return None if mode == UNSET else mode
