"""AuthorizationPolicy to Envoy's RBAC HTTP filters, as istiod builds them.

How Istio decides whether a request reaches a workload (istio.io, Authorization Policy reference):

1. CUSTOM policies first: if one matches, its external authorizer decides, and may deny.
2. If any DENY policy matches, the request is denied.
3. If no ALLOW policy applies to the workload, the request is allowed.
4. If any ALLOW policy matches, the request is allowed.
5. Otherwise it is denied.

AUDIT policies never change the decision: they only mark a request for audit logging.

istiod (pilot/pkg/security/authz/builder/builder.go) builds that chain from separate
`envoy.filters.http.rbac` filters in the workload's inbound HTTP connection manager (and in the
ingress gateway's), in this order: CUSTOM, AUDIT (Envoy action LOG), DENY, ALLOW. Envoy stops at
the first filter that denies, with 403 and the body "RBAC: access denied". Each rule of a policy
becomes one Envoy policy named `ns[<namespace>]-policy[<name>]-rule[<index>]`. An Envoy policy
matches when any of its permissions (the rule's `to`, plus `when` conditions on the destination)
and any of its principals (the rule's `from`, plus `when` conditions on the source) match.

Which policies apply to a workload (ListAuthorizationPolicies): those in the root namespace
(istio-system) and in the workload's namespace. Without a selector a policy applies to every
workload of its namespace (the root namespace's: of the whole mesh); with one, to the workloads
whose labels contain `selector.matchLabels` (a root-namespace selector looks in every namespace).
A policy with `targetRef(s)` is meant for Gateway API gateways and waypoints, and istiod ignores
it for sidecars and the Istio ingress gateway, which is all the sandbox runs.

Where the sandbox differs from a cluster, and why the result is still Istio's:
- ports: Envoy's `destination_port` is the port the connection arrived on. In a cluster that is
  the pod's port (iptables keeps it), in the sandbox it is the port the sidecar's inbound
  listener binds on 127.0.0.1, so `listener_ports` maps one to the other.
- CUSTOM: the sandbox has no ext_authz extension provider. istiod, when it cannot find the
  provider, denies the requests the CUSTOM rules match, and so does the sandbox.
- JWT (`requestPrincipals`, `request.auth.*`): the matchers are written as istiod writes them, on
  the jwt_authn filter's metadata. The sandbox runs no jwt_authn filter, so they behave as in
  Istio for a request without a token: they never match.
`unsupported()` tells the learner about each of these.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from .hosts import name_of, namespace_of
from .peer_authentication import MESH_ROOT_NAMESPACE, oldest_first

RBAC_FILTER = "envoy.filters.http.rbac"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
DRY_RUN_ANNOTATION = "istio.io/dry-run"
DENIED_BODY = "RBAC: access denied"  # what Envoy answers, with status 403

ALLOW, DENY, AUDIT, CUSTOM = "ALLOW", "DENY", "AUDIT", "CUSTOM"
_ENVOY_ACTION = {AUDIT: "LOG", DENY: "DENY", ALLOW: "ALLOW"}
# Dry-run policies go into `shadow_rules`: Envoy evaluates them and counts the result under
# these stat prefixes, and never acts on it (istiod's RBACShadowRules{Allow,Deny}StatPrefix).
_SHADOW_STAT_PREFIX = {ALLOW: "istio_dry_run_allow_", DENY: "istio_dry_run_deny_"}

# istiod's names for a CUSTOM policy whose provider it cannot find (getBadCustomDenyRules).
_EXT_AUTHZ_PREFIX = "istio-ext-authz"
_BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"

SPIFFE_PREFIX = "spiffe://"
_JWT_FILTER = "envoy.filters.http.jwt_authn"  # where jwt_authn puts a validated token's payload
# A policy without rules matches nothing (rbacPolicyMatchNever): as an ALLOW policy, it denies all.
_MATCH_NEVER = {
    "permissions": [{"not_rule": {"any": True}}],
    "principals": [{"not_id": {"any": True}}],
}

Matcher = dict[str, Any]  # an Envoy rbac Permission or Principal


class _Untranslatable(ValueError):
    """A value or key istiod cannot translate (a bad port or CIDR, an unknown attribute)."""


# --- which policies, which filters ----------------------------------------------------------


def applies_to(
    policy: Mapping[str, Any],
    namespace: str,
    labels: Mapping[str, str],
    *,
    root_namespace: str = MESH_ROOT_NAMESPACE,
) -> bool:
    """Whether `policy` applies to a workload in `namespace` with `labels` (a sidecar or the
    Istio ingress gateway)."""
    spec = policy.get("spec") or {}
    if namespace_of(policy) not in (root_namespace, namespace):
        return False
    if spec.get("targetRef") or spec.get("targetRefs"):
        return False  # for Gateway API gateways and waypoints only (ShouldAttachPolicy)
    match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in match_labels.items())


def rbac_http_filters(
    policies: Sequence[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    *,
    root_namespace: str = MESH_ROOT_NAMESPACE,
    listener_ports: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """The envoy.filters.http.rbac filters for a workload, in istiod's order (AUDIT as action LOG,
    DENY, ALLOW), to put before the fault/cors/router filters of its inbound HTTP connection
    manager (or the ingress gateway's). [] when no policy applies. CUSTOM policies come first,
    as the DENY filter istiod writes when it has no provider for them.

    `listener_ports` maps a port as written in a policy (the workload's container port, 9080)
    to the port the sandbox's inbound listener binds (20013): see the module docstring. Ports
    not in it are kept as written.
    """
    ports = dict(listener_ports or {})
    # istiod's order: the root namespace's policies, then the workload namespace's, each oldest
    # first. Envoy does not care (policies are a map), but config dumps then read alike.
    ordered = sorted(
        oldest_first(policies), key=lambda policy: namespace_of(policy) != root_namespace
    )
    selected = [
        policy
        for policy in ordered
        if applies_to(policy, namespace, labels, root_namespace=root_namespace)
    ]
    filters = _custom_filters([p for p in selected if _action(p) == CUSTOM], ports)
    for action in (AUDIT, DENY, ALLOW):
        of_action = [policy for policy in selected if _action(policy) == action]
        if of_action:
            filters.append(_rbac_filter(of_action, action, ports))
    return filters


def _action(policy: Mapping[str, Any]) -> str:
    return str((policy.get("spec") or {}).get("action") or ALLOW).upper()


def _is_dry_run(policy: Mapping[str, Any]) -> bool:
    """The `istio.io/dry-run` annotation, read as Go's strconv.ParseBool reads it."""
    annotations = (policy.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DRY_RUN_ANNOTATION, "")) in ("1", "t", "T", "true", "TRUE", "True")


def _rbac_filter(
    policies: Iterable[Mapping[str, Any]], action: str, ports: Mapping[int, int]
) -> dict[str, Any]:
    """One RBAC filter for all the policies of one action: the enforced ones in `rules`, the
    dry-run ones in `shadow_rules`. A filter with only shadow rules never blocks a request."""
    rules: dict[str, Matcher] | None = None
    shadow_rules: dict[str, Matcher] | None = None
    for policy in policies:
        translated = envoy_policies(policy, action, ports)
        if _is_dry_run(policy):
            shadow_rules = {**(shadow_rules or {}), **translated}
        else:
            rules = {**(rules or {}), **translated}
    config: dict[str, Any] = {"@type": RBAC_TYPE}
    if rules is not None:
        config["rules"] = {"action": _ENVOY_ACTION[action], "policies": rules}
    if shadow_rules is not None:
        config["shadow_rules"] = {"action": _ENVOY_ACTION[action], "policies": shadow_rules}
        if action in _SHADOW_STAT_PREFIX:
            config["shadow_rules_stat_prefix"] = _SHADOW_STAT_PREFIX[action]
    return {"name": RBAC_FILTER, "typed_config": config}


def _custom_filters(
    policies: Iterable[Mapping[str, Any]], ports: Mapping[int, int]
) -> list[dict[str, Any]]:
    """CUSTOM policies as istiod writes them when their provider is not in meshConfig (the
    sandbox has no providers): a DENY filter per provider, denying what the rules match."""
    by_provider: dict[str, dict[str, Matcher]] = {}
    for policy in policies:
        if _is_dry_run(policy):
            continue  # a dry-run CUSTOM policy is left out of the fallback
        provider = str(((policy.get("spec") or {}).get("provider") or {}).get("name") or "")
        prefix = f"{_EXT_AUTHZ_PREFIX}-{provider}-" if provider else f"{_EXT_AUTHZ_PREFIX}-"
        denied = by_provider.setdefault(provider, {})
        for name, translated in envoy_policies(policy, DENY, ports).items():
            denied[f"{prefix}{name}{_BAD_CUSTOM_SUFFIX}"] = translated
    return [
        {
            "name": RBAC_FILTER,
            "typed_config": {
                "@type": RBAC_TYPE,
                "rules": {"action": "DENY", "policies": by_provider[provider]},
            },
        }
        for provider in sorted(by_provider)
    ]


def policy_name(namespace: str, name: str, rule: int) -> str:
    return f"ns[{namespace}]-policy[{name}]-rule[{rule}]"


def envoy_policies(
    policy: Mapping[str, Any], action: str, listener_ports: Mapping[int, int] | None = None
) -> dict[str, Matcher]:
    """An AuthorizationPolicy's rules as Envoy policies, by name.

    A rule istiod cannot translate is left out, as istiod logs "skipped invalid rule"; a policy
    without rules is one policy that never matches.
    """
    namespace, name = namespace_of(policy), name_of(policy)
    rules = (policy.get("spec") or {}).get("rules") or []
    if not rules:
        return {policy_name(namespace, name, 0): copy.deepcopy(_MATCH_NEVER)}
    translated: dict[str, Matcher] = {}
    for index, rule in enumerate(rules):
        if rule is None:
            continue
        try:
            translated[policy_name(namespace, name, index)] = envoy_policy(
                rule, action, namespace, listener_ports or {}
            )
        except _Untranslatable:
            continue
    return translated


# --- one rule -------------------------------------------------------------------------------


def envoy_policy(
    rule: Mapping[str, Any],
    action: str,
    namespace: str,
    listener_ports: Mapping[int, int],
) -> Matcher:
    """One Istio rule as an Envoy `Policy{permissions, principals}` (authz/model New, Generate).

    Every `to` entry is a permission and every `from` entry a principal, each the AND of its
    fields; the `when` conditions are ANDed into every one of them, after the fields.
    """
    base_permission, base_principal = _conditions(
        rule.get("when") or [], action, namespace, listener_ports
    )
    permissions = [
        _and(
            "permission",
            [*_operation(to.get("operation") or {}, action, listener_ports), *base_permission],
        )
        for to in rule.get("to") or []
    ] or [_and("permission", base_permission)]
    principals = [
        _and("principal", [*_source(entry.get("source") or {}, action, namespace), *base_principal])
        for entry in rule.get("from") or []
    ] or [_and("principal", base_principal)]
    return {"permissions": permissions, "principals": principals}


def _operation(
    operation: Mapping[str, Any], action: str, listener_ports: Mapping[int, int]
) -> list[Matcher]:
    """`to.operation`: hosts, methods, paths, ports, in istiod's order."""
    fields: list[tuple[str, str, Callable[[str], Matcher]]] = [
        ("hosts", "notHosts", _host),
        ("methods", "notMethods", lambda v: {"header": _header(":method", v)}),
        ("paths", "notPaths", _path),
        ("ports", "notPorts", lambda v: _destination_port(v, listener_ports)),
    ]
    matchers: list[Matcher] = []
    for field, negated, make in fields:
        matchers += _field("permission", operation.get(field), operation.get(negated), make, action)
    return matchers


def _source(source: Mapping[str, Any], action: str, namespace: str) -> list[Matcher]:
    """`from.source`: principals, requestPrincipals, serviceAccounts, namespaces,
    remoteIpBlocks, ipBlocks, in istiod's order."""
    matchers = _field(
        "principal", source.get("principals"), source.get("notPrincipals"), _principal, action
    )
    matchers += _extended_field(
        source.get("requestPrincipals"), source.get("notRequestPrincipals"), _request_principals
    )
    fields: list[tuple[str, str, Callable[[str], Matcher]]] = [
        ("serviceAccounts", "notServiceAccounts", lambda v: _service_account(v, namespace)),
        ("namespaces", "notNamespaces", _source_namespace),
        ("remoteIpBlocks", "notRemoteIpBlocks", lambda v: {"remote_ip": _cidr(v)}),
        ("ipBlocks", "notIpBlocks", lambda v: {"direct_remote_ip": _cidr(v)}),
    ]
    for field, negated, make in fields:
        matchers += _field("principal", source.get(field), source.get(negated), make, action)
    return matchers


def _conditions(
    conditions: Iterable[Mapping[str, Any]],
    action: str,
    namespace: str,
    listener_ports: Mapping[int, int],
) -> tuple[list[Matcher], list[Matcher]]:
    """The `when` conditions, split as istiod splits them: those about the destination join
    the permissions, those about the source or the request join the principals."""
    destination: dict[str, Callable[[str], Matcher]] = {
        "destination.ip": lambda value: {"destination_ip": _cidr(value)},
        "destination.port": lambda value: _destination_port(value, listener_ports),
        "connection.sni": lambda value: {"requested_server_name": _string_match(value)},
    }
    source: dict[str, Callable[[str], Matcher]] = {
        "source.ip": lambda value: {"direct_remote_ip": _cidr(value)},
        "remote.ip": lambda value: {"remote_ip": _cidr(value)},
        "source.namespace": _source_namespace,
        "source.serviceAccount": lambda value: _service_account(value, namespace),
        "source.principal": _principal,
    }
    permissions: list[Matcher] = []
    principals: list[Matcher] = []
    for condition in conditions:
        key = str(condition.get("key", ""))
        values, not_values = condition.get("values"), condition.get("notValues")
        if key in destination:
            permissions += _field("permission", values, not_values, destination[key], action)
        elif key in source:
            principals += _field("principal", values, not_values, source[key], action)
        elif key.startswith("request.headers"):
            header = _in_brackets(key.removeprefix("request.headers"))
            make = partial(_request_header, header)
            principals += _field("principal", values, not_values, make, action)
        elif key == "request.auth.principal":
            principals += _extended_field(values, not_values, _request_principals)
        elif key.startswith("request.auth."):
            principals += _extended_field(values, not_values, partial(_claim, _claim_path(key)))
        else:
            # Unknown to istiod, or experimental and not translated by the sandbox: istiod
            # skips the whole rule ("skipped invalid rule").
            raise _Untranslatable(f"unsupported attribute {key}")
    return permissions, principals


# --- combining ------------------------------------------------------------------------------

# Envoy spells the same combinators differently for permissions and principals.
_WORDS = {
    "permission": {"and": "and_rules", "or": "or_rules", "set": "rules", "not": "not_rule"},
    "principal": {"and": "and_ids", "or": "or_ids", "set": "ids", "not": "not_id"},
}


def _and(kind: str, matchers: list[Matcher]) -> Matcher:
    """All of `matchers`; an empty list matches everything (`any: true`), as in istiod."""
    words = _WORDS[kind]
    return {words["and"]: {words["set"]: matchers or [{"any": True}]}}


def _field(
    kind: str,
    values: Iterable[str] | None,
    not_values: Iterable[str] | None,
    make: Callable[[str], Matcher],
    action: str,
) -> list[Matcher]:
    """One Istio field: any of its values, and none of its notValues.

    A value istiod cannot translate shrinks an ALLOW rule (the rule is dropped: fewer requests
    allowed) but widens a DENY or AUDIT rule (only the value is dropped: more requests denied),
    so that a mistake fails closed (authz/model rule.checkError).
    """
    words = _WORDS[kind]
    matchers: list[Matcher] = []
    for chosen, negate in ((values, False), (not_values, True)):
        translated = []
        for value in chosen or ():
            try:
                translated.append(make(str(value)))
            except _Untranslatable:
                if action == ALLOW:
                    raise
        if translated:
            any_of = {words["or"]: {words["set"]: translated}}
            matchers.append({words["not"]: any_of} if negate else any_of)
    return matchers


def _extended_field(
    values: Sequence[str] | None,
    not_values: Sequence[str] | None,
    make_all: Callable[[str], Matcher],
) -> list[Matcher]:
    """A JWT field (istiod's "extended" generators): one principal for all the values, or'ed
    only when there are several; its negation is a `not_id` of that principal."""
    matchers = []
    for chosen, negate in ((values, False), (not_values, True)):
        if chosen:
            each = [make_all(str(value)) for value in chosen]
            one = each[0] if len(each) == 1 else {"or_ids": {"ids": each}}
            matchers.append({"not_id": one} if negate else one)
    return matchers


# --- values ---------------------------------------------------------------------------------


def _string_match(value: str, prefix: str = "") -> dict[str, Any]:
    """Istio's value forms as an Envoy StringMatcher (StringMatcherWithPrefix): `v` exact,
    `v*` prefix, `*v` suffix, `*` any non-empty value. `prefix` (spiffe://) is written in front,
    so a suffix form becomes a regex; istiod does not escape it, nor does the sandbox."""
    if value == "*":
        return {"safe_regex": {"regex": ".+"}}
    if value.startswith("*"):
        if prefix:
            return {"safe_regex": {"regex": f"{prefix}.*{value[1:]}"}}
        return {"suffix": value[1:]}
    if value.endswith("*"):
        return {"prefix": prefix + value[:-1]}
    return {"exact": prefix + value}


def _header(name: str, value: str) -> dict[str, Any]:
    """A HeaderMatcher: `*` means the header is present, other forms as `_string_match`."""
    if value == "*":
        return {"name": name, "present_match": True}
    return {"name": name, "string_match": _string_match(value)}


def _request_header(name: str, value: str) -> Matcher:
    """`request.headers[<name>]`."""
    return {"header": _header(name, value)}


def _host(value: str) -> Matcher:
    """`hosts`: the `:authority` header, case-insensitive. As in istiod the value must match the
    whole header, port included: `reviews` does not match `reviews:9080` (istio/istio#44080),
    so write `reviews:9080` or `reviews*` too."""
    header = _header(":authority", value)
    if "string_match" in header:
        header["string_match"]["ignore_case"] = True
    return {"header": header}


def _path(value: str) -> Matcher:
    """`paths`: the request path without its query. A value with `{*}` or `{**}` is a URI
    template (one or any number of segments), the others a `_string_match`."""
    if "{*}" in value or "{**}" in value:
        template = value.replace("{**}", "**").replace("{*}", "*")
        return {
            "uri_template": {
                "name": "uri-template",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
                    "path_template": template,
                },
            }
        }
    return {"url_path": {"path": _string_match(value)}}


def _destination_port(value: str, listener_ports: Mapping[int, int]) -> Matcher:
    """`ports` and `destination.port`. Envoy compares the local port of the connection: in the
    sandbox, the port the inbound listener binds, which `listener_ports` maps to."""
    if not value.isdigit() or int(value) > 65535:
        raise _Untranslatable(f"invalid port {value}")
    port = int(value)
    return {"destination_port": listener_ports.get(port, port)}


def _cidr(value: str) -> dict[str, Any]:
    """An IP (`10.0.0.1`, a /32) or a CIDR block (`10.0.0.0/16`) as an Envoy CidrRange."""
    address, _, length = value.partition("/")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as error:
        raise _Untranslatable(f"invalid IP {value}") from error
    if length and not (length.isdigit() and int(length) <= ip.max_prefixlen):
        raise _Untranslatable(f"invalid CIDR {value}")
    return {"address_prefix": str(ip), "prefix_len": int(length) if length else ip.max_prefixlen}


def _principal(value: str) -> Matcher:
    """`principals`, `source.principal`: the peer certificate's SPIFFE ID, which the policy
    writes without its scheme (cluster.local/ns/default/sa/productpage). Over plaintext there
    is no certificate, and this never matches."""
    return {"authenticated": {"principal_name": _string_match(value, SPIFFE_PREFIX)}}


def _source_namespace(value: str) -> Matcher:
    """`namespaces`, `source.namespace`: the namespace part of the peer's SPIFFE ID."""
    regex = f".*/ns/{value.replace('*', '.*')}/.*"
    return {"authenticated": {"principal_name": {"safe_regex": {"regex": regex}}}}


def _service_account(value: str, namespace: str) -> Matcher:
    """`serviceAccounts`, `source.serviceAccount`: `sa` (in the policy's namespace) or `ns/sa`,
    matched on the peer's SPIFFE ID (istiod's serviceAccountRegex)."""
    account_namespace, slash, account = value.partition("/")
    if not slash:
        account_namespace, account = namespace, value
    regex = f"spiffe://.+/ns/{account_namespace}/(.+/|)sa/{account}(/.+)?"
    return {"authenticated": {"principal_name": {"safe_regex": {"regex": regex}}}}


# --- JWT: written as istiod writes them, never matched in the sandbox (no jwt_authn) --------


def _any_value() -> dict[str, Any]:
    return {"safe_regex": {"regex": ".+"}}


def _jwt_payload(path: Sequence[str], value: Mapping[str, Any]) -> Matcher:
    """A principal on the validated token's payload, which jwt_authn stores in its metadata.

    Envoy 1.40 deprecates `Principal.metadata` (istiod still writes it); its replacement,
    `sourced_metadata`, reads the same dynamic metadata.
    """
    return {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": _JWT_FILTER,
                "path": [{"key": "payload"}, *({"key": key} for key in path)],
                "value": dict(value),
            }
        }
    }


def _request_principals(value: str) -> Matcher:
    """`requestPrincipals`, `request.auth.principal`: `<iss>/<sub>` with Istio's wildcards, as
    the token's `iss` and `sub` claims (requestPrincipalGenerator)."""
    issuer, slash, subject = value.rpartition("/")  # the issuer may be a URL: split at the last /
    if not slash:
        issuer, subject = value, ""
    if value == "*":
        match_iss, match_sub = _any_value(), _any_value()
    elif value.startswith("*"):
        if slash:
            match_iss = _any_value() if issuer == "*" else {"suffix": issuer[1:]}
            match_sub = {"exact": subject}
        else:
            match_iss, match_sub = _any_value(), {"suffix": value[1:]}
    elif value.endswith("*"):
        if slash:
            match_iss = {"exact": issuer}
            match_sub = _any_value() if subject == "*" else {"prefix": subject[:-1]}
        else:
            match_iss, match_sub = {"prefix": value[:-1]}, _any_value()
    else:
        match_iss, match_sub = {"exact": issuer}, {"exact": subject}
    return {
        "and_ids": {
            "ids": [
                _jwt_payload(["iss"], {"string_match": match_iss}),
                _jwt_payload(["sub"], {"string_match": match_sub}),
            ]
        }
    }


def _claim(path: Sequence[str], value: str) -> Matcher:
    """`request.auth.claims[...]`, `.audiences`, `.presenter`: the claim equals the value, or is
    a list holding it."""
    string = {"string_match": _string_match(value)}
    return _jwt_payload(
        path, {"or_match": {"value_matchers": [{"list_match": {"one_of": string}}, string]}}
    )


def _claim_path(key: str) -> list[str]:
    """The claim a `request.auth.*` key names: `audiences` is `aud`, `presenter` is `azp`,
    `claims[groups]` is `groups`, and `claims[a][b]` the nested claim a.b."""
    if key == "request.auth.audiences":
        return ["aud"]
    if key == "request.auth.presenter":
        return ["azp"]
    if key.startswith("request.auth.claims"):
        return _nested_brackets(key.removeprefix("request.auth.claims"))
    raise _Untranslatable(f"unsupported attribute {key}")


def _in_brackets(text: str) -> str:
    if not (text.startswith("[") and text.endswith("]")):
        raise _Untranslatable(f"expecting [<NAME>], found {text}")
    return text[1:-1]


def _nested_brackets(text: str) -> list[str]:
    """`[a][b]` is the nested claim a.b; `[a.b]` a claim named "a.b"."""
    if re.fullmatch(r"(\[[^\[\]]+\])+", text):
        return re.findall(r"\[([^\[\]]+)\]", text)
    return [_in_brackets(text)]


# --- what the sandbox cannot enforce ----------------------------------------------------------

_JWT_FIX = (
    "needs a RequestAuthentication, whose tokens Envoy's jwt_authn filter validates; the "
    "sandbox does no request authentication, so no request carries a token and this never "
    'matches (so `notRequestPrincipals: ["*"]` in a DENY policy denies every request). '
    "Use peer identities (principals, namespaces, serviceAccounts) or request headers here, "
    "or run JWT tasks on the kind target"
)
# The `when` keys `_conditions` translates, besides request.headers[...] and request.auth.*.
_KNOWN_KEYS = (
    "destination.ip",
    "destination.port",
    "connection.sni",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.serviceAccount",
    "source.principal",
)


def unsupported(policy: Mapping[str, Any]) -> str | None:
    """Why the sandbox cannot enforce this AuthorizationPolicy (None when it can); the message
    names the field and the fix."""
    spec = policy.get("spec") or {}
    for field in ("targetRef", "targetRefs"):
        if spec.get(field):
            return (
                f"spec.{field} attaches a policy to a Gateway API gateway or a waypoint; istiod "
                "ignores it for sidecars and for the Istio ingress gateway, the sandbox's only "
                "proxies, so it would have no effect. Select workloads with "
                "spec.selector.matchLabels instead (istio: ingressgateway for the gateway), or "
                "use the kind target"
            )
    if _action(policy) == CUSTOM:
        provider = ((spec.get("provider") or {}).get("name")) or "(none)"
        return (
            f"action: CUSTOM hands the decision to an external authorizer (provider {provider} "
            "from meshConfig.extensionProviders, run by Envoy's ext_authz filter); the sandbox "
            "has none, so, as istiod does for a provider it cannot find, it denies every request "
            "the rules match. Use ALLOW or DENY policies here, or the kind target with an "
            "ext_authz provider"
        )
    for i, rule in enumerate(spec.get("rules") or []):
        for j, entry in enumerate((rule or {}).get("from") or []):
            source = entry.get("source") or {}
            for field in ("requestPrincipals", "notRequestPrincipals"):
                if source.get(field):
                    return f"spec.rules[{i}].from[{j}].source.{field} {_JWT_FIX}"
        for k, condition in enumerate((rule or {}).get("when") or []):
            key = str(condition.get("key", ""))
            where = f"spec.rules[{i}].when[{k}] (key: {key})"
            if key.startswith("request.auth."):
                return f"{where} {_JWT_FIX}"
            if key not in _KNOWN_KEYS and not re.fullmatch(r"request\.headers\[[^\]]+\]", key):
                return (
                    f"{where} is not an attribute the sandbox translates (it knows "
                    f"{', '.join(_KNOWN_KEYS)}, request.headers[<name>] and "
                    "request.auth.*); istiod skips a rule with an attribute it does not know. "
                    "Use one of those keys"
                )
    return None
