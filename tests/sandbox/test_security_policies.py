"""PeerAuthentication and AuthorizationPolicy, translated as istiod translates them.

The first part composes mTLS modes from PeerAuthentication policies. The second turns
AuthorizationPolicies into Envoy RBAC filters, starting from the Bookinfo policies of istio.io's
"Authorization for HTTP traffic" task. Then the real Envoy checks the result: `envoy --mode
validate` must accept filters that use every supported field without a deprecation warning, and
one running Envoy, with a plaintext listener per scenario in front of a small app on loopback,
must allow and deny what Istio allows and denies.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from istiolab.errors import IstiolabError
from istiolab.sandbox.envoy import binary
from istiolab.sandbox.translate.authorization import (
    DENIED_BODY,
    RBAC_FILTER,
    RBAC_TYPE,
    applies_to,
    rbac_http_filters,
    unsupported,
)
from istiolab.sandbox.translate.peer_authentication import effective_mode, mtls_mode
from live import HOST, Reply, Upstream, closed_port, stop

PRODUCTPAGE = {"app": "productpage", "version": "v1"}
DETAILS = {"app": "details", "version": "v1"}
REVIEWS = {"app": "reviews", "version": "v2"}
RATINGS = {"app": "ratings", "version": "v1"}


def resources(*texts: str) -> list[dict[str, Any]]:
    """Istio resources as applied: parsed YAML, `default` namespace unless written."""
    documents = []
    for text in texts:
        for document in yaml.safe_load_all(text):
            if document:
                document.setdefault("metadata", {}).setdefault("namespace", "default")
                documents.append(document)
    return documents


# --- PeerAuthentication -----------------------------------------------------------------------


def peer_authentication(
    name: str,
    namespace: str = "default",
    *,
    mode: str | None = None,
    selector: Mapping[str, str] | None = None,
    ports: Mapping[Any, str] | None = None,
    created: str = "2025-01-01T00:00:00Z",
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": dict(selector)}
    if ports is not None:
        spec["portLevelMtls"] = {port: {"mode": mode} for port, mode in ports.items()}
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": spec,
    }


MESH_STRICT = peer_authentication("default", "istio-system", mode="STRICT")


def test_without_any_policy_a_port_is_permissive() -> None:
    assert mtls_mode([], "default", REVIEWS, 9080) == "PERMISSIVE"
    assert effective_mode([], "default", REVIEWS).decided_by is None


def test_the_narrowest_scope_wins() -> None:
    namespace_wide = peer_authentication("default", mode="PERMISSIVE")
    workload = peer_authentication("reviews", mode="DISABLE", selector={"app": "reviews"})

    assert mtls_mode([MESH_STRICT], "default", REVIEWS) == "STRICT"
    assert mtls_mode([MESH_STRICT, namespace_wide], "default", REVIEWS) == "PERMISSIVE"
    everything = [workload, namespace_wide, MESH_STRICT]
    assert mtls_mode(everything, "default", REVIEWS) == "DISABLE"
    assert mtls_mode(everything, "default", RATINGS) == "PERMISSIVE"  # not selected
    assert mtls_mode(everything, "prod", REVIEWS) == "STRICT"  # the other namespace: mesh-wide
    assert effective_mode(everything, "default", REVIEWS).decided_by is workload


def test_unset_or_missing_modes_inherit_from_the_parent_scope() -> None:
    policies = [
        MESH_STRICT,
        peer_authentication("default", mode="UNSET"),
        peer_authentication("reviews", selector={"app": "reviews"}),  # no mtls block at all
    ]
    assert mtls_mode(policies, "default", REVIEWS, 9080) == "STRICT"
    assert effective_mode(policies, "default", REVIEWS).decided_by is MESH_STRICT


def test_port_level_mtls_overrides_the_workload_mode_for_its_target_port() -> None:
    workload = peer_authentication(
        "reviews",
        mode="STRICT",
        selector={"app": "reviews"},
        ports={8080: "DISABLE", "9090": "PERMISSIVE", 9091: "UNSET"},
    )
    assert mtls_mode([workload], "default", REVIEWS, 8080) == "DISABLE"
    assert mtls_mode([workload], "default", REVIEWS, 9090) == "PERMISSIVE"  # key as a string
    assert mtls_mode([workload], "default", REVIEWS, 9091) == "STRICT"  # UNSET: workload's
    assert mtls_mode([workload], "default", REVIEWS, 9080) == "STRICT"
    assert mtls_mode([workload], "default", REVIEWS) == "STRICT"


def test_port_level_mtls_counts_only_on_a_workload_policy() -> None:
    namespace_wide = peer_authentication("default", mode="STRICT", ports={8080: "DISABLE"})
    assert mtls_mode([namespace_wide], "default", REVIEWS, 8080) == "STRICT"


def test_within_a_scope_the_oldest_policy_wins_then_the_first_name() -> None:
    older = peer_authentication("zz-older", mode="STRICT", created="2025-01-01T00:00:00Z")
    newer = peer_authentication("aa-newer", mode="DISABLE", created="2025-06-01T00:00:00Z")
    assert mtls_mode([newer, older], "default", REVIEWS) == "STRICT"

    same_time = [
        peer_authentication("b", mode="DISABLE"),
        peer_authentication("a", mode="STRICT"),
    ]
    assert mtls_mode(same_time, "default", REVIEWS) == "STRICT"


def test_the_oldest_workload_policy_wins_even_when_it_leaves_the_mode_unset() -> None:
    """istiod picks one policy per scope first, then resolves UNSET: the newer STRICT policy
    for the same workload is never looked at."""
    policies = [
        peer_authentication("default", mode="PERMISSIVE"),
        peer_authentication(
            "old", selector={"app": "reviews"}, mode="UNSET", created="2025-01-01T00:00:00Z"
        ),
        peer_authentication(
            "new", selector={"app": "reviews"}, mode="STRICT", created="2025-02-01T00:00:00Z"
        ),
    ]
    assert mtls_mode(policies, "default", REVIEWS) == "PERMISSIVE"


def test_a_selector_only_counts_in_the_workloads_own_namespace() -> None:
    elsewhere = peer_authentication("reviews", "prod", mode="DISABLE", selector={"app": "reviews"})
    assert mtls_mode([MESH_STRICT, elsewhere], "default", REVIEWS) == "STRICT"

    # In the root namespace a selector makes a policy ignored, even for the root's workloads.
    root_selector = peer_authentication(
        "gateway", "istio-system", mode="DISABLE", selector={"istio": "ingressgateway"}
    )
    gateway = {"istio": "ingressgateway"}
    assert mtls_mode([MESH_STRICT, root_selector], "istio-system", gateway) == "STRICT"
    assert mtls_mode([MESH_STRICT, root_selector], "default", gateway) == "STRICT"


def test_timestamps_yaml_reads_as_datetimes_still_order_policies() -> None:
    policies = resources(
        """
kind: PeerAuthentication
metadata: {name: b-older, creationTimestamp: 2025-01-01T00:00:00Z}
spec: {mtls: {mode: STRICT}}
---
kind: PeerAuthentication
metadata: {name: a-newer, creationTimestamp: 2025-03-01T00:00:00Z}
spec: {mtls: {mode: DISABLE}}
"""
    )
    assert mtls_mode(policies, "default", REVIEWS) == "STRICT"


# --- AuthorizationPolicy: Bookinfo, from istio.io's "Authorization for HTTP traffic" ------------

# (Older versions of the task name the first policy deny-all.)
ALLOW_NOTHING = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: default}
spec: {}
"""
PRODUCTPAGE_VIEWER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-viewer, namespace: default}
spec:
  selector:
    matchLabels: {app: productpage}
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET"]
"""
DETAILS_VIEWER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: details-viewer, namespace: default}
spec:
  selector:
    matchLabels: {app: details}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]
    to:
    - operation:
        methods: ["GET"]
"""
REVIEWS_VIEWER = DETAILS_VIEWER.replace("details", "reviews")
RATINGS_VIEWER = DETAILS_VIEWER.replace("details", "ratings").replace(
    "bookinfo-productpage", "bookinfo-reviews"
)
BOOKINFO = (ALLOW_NOTHING, PRODUCTPAGE_VIEWER, DETAILS_VIEWER, REVIEWS_VIEWER, RATINGS_VIEWER)

GET = {"header": {"name": ":method", "string_match": {"exact": "GET"}}}
ANY_PRINCIPAL = {"and_ids": {"ids": [{"any": True}]}}
MATCH_NEVER = {
    "permissions": [{"not_rule": {"any": True}}],
    "principals": [{"not_id": {"any": True}}],
}


def rbac_filter(action: str, policies: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": RBAC_FILTER,
        "typed_config": {"@type": RBAC_TYPE, "rules": {"action": action, "policies": policies}},
    }


def filters_for(labels: Mapping[str, str], *texts: str, **options: Any) -> list[dict[str, Any]]:
    return rbac_http_filters(resources(*texts), "default", labels, **options)


def only_policies(filters: list[dict[str, Any]]) -> dict[str, Any]:
    """The Envoy policies of the one enforcing RBAC filter in `filters`."""
    [rbac] = filters
    return rbac["typed_config"]["rules"]["policies"]


def only_policy(filters: list[dict[str, Any]]) -> dict[str, Any]:
    [policy] = only_policies(filters).values()
    return policy


def test_allow_nothing_is_an_allow_filter_that_never_matches() -> None:
    assert filters_for(PRODUCTPAGE, ALLOW_NOTHING) == [
        rbac_filter("ALLOW", {"ns[default]-policy[allow-nothing]-rule[0]": MATCH_NEVER})
    ]


def test_productpage_viewer_allows_get_from_anyone() -> None:
    assert filters_for(PRODUCTPAGE, PRODUCTPAGE_VIEWER) == [
        rbac_filter(
            "ALLOW",
            {
                "ns[default]-policy[productpage-viewer]-rule[0]": {
                    "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [GET]}}]}}],
                    "principals": [ANY_PRINCIPAL],
                }
            },
        )
    ]


def test_details_viewer_allows_get_from_productpages_identity_only() -> None:
    productpage_identity = {
        "authenticated": {
            "principal_name": {"exact": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"}
        }
    }
    assert filters_for(DETAILS, DETAILS_VIEWER) == [
        rbac_filter(
            "ALLOW",
            {
                "ns[default]-policy[details-viewer]-rule[0]": {
                    "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [GET]}}]}}],
                    "principals": [
                        {"and_ids": {"ids": [{"or_ids": {"ids": [productpage_identity]}}]}}
                    ],
                }
            },
        )
    ]


@pytest.mark.parametrize(
    ("labels", "name", "caller"),
    [
        (REVIEWS, "reviews-viewer", "bookinfo-productpage"),
        (RATINGS, "ratings-viewer", "bookinfo-reviews"),
    ],
)
def test_each_bookinfo_workload_gets_its_viewer_and_the_namespace_wide_policy(
    labels: Mapping[str, str], name: str, caller: str
) -> None:
    policies = only_policies(filters_for(labels, *BOOKINFO))

    assert sorted(policies) == sorted(
        ["ns[default]-policy[allow-nothing]-rule[0]", f"ns[default]-policy[{name}]-rule[0]"]
    )
    viewer = policies[f"ns[default]-policy[{name}]-rule[0]"]
    [principal] = viewer["principals"]
    [any_of] = principal["and_ids"]["ids"]
    assert any_of["or_ids"]["ids"] == [
        {
            "authenticated": {
                "principal_name": {"exact": f"spiffe://cluster.local/ns/default/sa/{caller}"}
            }
        }
    ]
    assert viewer["permissions"] == [{"and_rules": {"rules": [{"or_rules": {"rules": [GET]}}]}}]


def test_without_any_policy_there_is_no_filter() -> None:
    assert filters_for(PRODUCTPAGE) == []
    assert filters_for(PRODUCTPAGE, DETAILS_VIEWER) == []  # selects another workload


def test_which_policies_apply_to_a_workload() -> None:
    def policy(namespace: str, selector: str = "", extra: str = "") -> dict[str, Any]:
        [document] = resources(
            f"""
kind: AuthorizationPolicy
metadata: {{name: p, namespace: {namespace}}}
spec: {{{selector}{extra}}}
"""
        )
        return document

    def applies(document: Mapping[str, Any], namespace: str = "default") -> bool:
        return applies_to(document, namespace, REVIEWS)

    assert applies(policy("istio-system"))  # root namespace, no selector: the whole mesh
    assert applies(policy("istio-system"), "prod")
    assert applies(policy("istio-system", "selector: {matchLabels: {app: reviews}}"), "prod")
    assert not applies(policy("istio-system", "selector: {matchLabels: {app: ratings}}"))
    assert applies(policy("default"))  # its namespace, no selector
    assert not applies(policy("default"), "prod")
    assert applies(policy("default", "selector: {matchLabels: {app: reviews, version: v2}}"))
    assert not applies(policy("default", "selector: {matchLabels: {version: v1}}"))
    assert not applies(policy("prod", "selector: {matchLabels: {app: reviews}}"))
    assert not applies(policy("default", extra="targetRefs: [{kind: Gateway, name: gw}]"))
    assert not applies(policy("default", extra="targetRef: {kind: Service, name: reviews}"))


def test_filters_come_in_istiods_order_audit_deny_allow() -> None:
    filters = filters_for(
        REVIEWS,
        """
kind: AuthorizationPolicy
metadata: {name: allow-get}
spec:
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: audit-all}
spec:
  action: AUDIT
  rules: [{}]
""",
    )
    assert [f["typed_config"]["rules"]["action"] for f in filters] == ["LOG", "DENY", "ALLOW"]
    assert [list(f["typed_config"]["rules"]["policies"]) for f in filters] == [
        ["ns[default]-policy[audit-all]-rule[0]"],
        ["ns[default]-policy[deny-admin]-rule[0]"],
        ["ns[default]-policy[allow-get]-rule[0]"],
    ]


def test_policies_of_the_root_namespace_come_first_then_the_oldest() -> None:
    filters = filters_for(
        REVIEWS,
        """
kind: AuthorizationPolicy
metadata: {name: newer, creationTimestamp: "2025-02-01T00:00:00Z"}
spec: {rules: [{}]}
---
kind: AuthorizationPolicy
metadata: {name: older, creationTimestamp: "2025-01-01T00:00:00Z"}
spec: {rules: [{}]}
---
kind: AuthorizationPolicy
metadata: {name: mesh, namespace: istio-system, creationTimestamp: "2025-03-01T00:00:00Z"}
spec: {rules: [{}]}
""",
    )
    assert list(only_policies(filters)) == [
        "ns[istio-system]-policy[mesh]-rule[0]",
        "ns[default]-policy[older]-rule[0]",
        "ns[default]-policy[newer]-rule[0]",
    ]


def test_an_empty_rule_allows_everything() -> None:
    filters = filters_for(
        REVIEWS, "kind: AuthorizationPolicy\nmetadata: {name: all}\nspec: {rules: [{}]}"
    )
    assert only_policy(filters) == {
        "permissions": [{"and_rules": {"rules": [{"any": True}]}}],
        "principals": [ANY_PRINCIPAL],
    }


def test_a_deny_policy_without_rules_matches_nothing() -> None:
    """istiod still writes the filter, with a policy that never matches: no request is denied."""
    filters = filters_for(
        REVIEWS, "kind: AuthorizationPolicy\nmetadata: {name: d}\nspec: {action: DENY}"
    )
    assert filters == [rbac_filter("DENY", {"ns[default]-policy[d]-rule[0]": MATCH_NEVER})]


def test_each_rule_is_one_envoy_policy_each_to_and_from_entry_one_permission_or_principal() -> None:
    filters = filters_for(
        REVIEWS,
        """
kind: AuthorizationPolicy
metadata: {name: two-rules}
spec:
  rules:
  - to: [{operation: {methods: [GET]}}, {operation: {methods: [HEAD]}}]
    from: [{source: {namespaces: [default]}}, {source: {namespaces: [prod]}}]
  - to: [{operation: {paths: [/health]}}]
""",
    )
    policies = only_policies(filters)
    assert list(policies) == [
        "ns[default]-policy[two-rules]-rule[0]",
        "ns[default]-policy[two-rules]-rule[1]",
    ]
    first = policies["ns[default]-policy[two-rules]-rule[0]"]
    assert len(first["permissions"]) == 2
    assert len(first["principals"]) == 2
    assert policies["ns[default]-policy[two-rules]-rule[1]"]["principals"] == [ANY_PRINCIPAL]


def one_rule(rule_yaml: str, action: str = "ALLOW") -> str:
    """A policy `p` on every workload of `default`, with one rule."""
    return f"""
kind: AuthorizationPolicy
metadata: {{name: p}}
spec:
  action: {action}
  rules:
  - {rule_yaml}
"""


def rule_matchers(rule_yaml: str, *, action: str = "ALLOW", **options: Any) -> dict[str, Any]:
    """The one Envoy policy of a one-rule policy, as applied to reviews."""
    return only_policy(filters_for(REVIEWS, one_rule(rule_yaml, action), **options))


def permission_rules(rule_yaml: str, **options: Any) -> list[dict[str, Any]]:
    [permission] = rule_matchers(rule_yaml, **options)["permissions"]
    return permission["and_rules"]["rules"]


def principal_ids(rule_yaml: str, **options: Any) -> list[dict[str, Any]]:
    [principal] = rule_matchers(rule_yaml, **options)["principals"]
    return principal["and_ids"]["ids"]


def test_path_values_exact_prefix_suffix_presence_and_templates() -> None:
    [any_of] = permission_rules(
        'to: [{operation: {paths: [/exact, "/prefix/*", "*/suffix", "*", "/api/{*}/items/{**}"]}}]'
    )
    template = (
        "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
    )
    assert any_of["or_rules"]["rules"] == [
        {"url_path": {"path": {"exact": "/exact"}}},
        {"url_path": {"path": {"prefix": "/prefix/"}}},
        {"url_path": {"path": {"suffix": "/suffix"}}},
        {"url_path": {"path": {"safe_regex": {"regex": ".+"}}}},
        {
            "uri_template": {
                "name": "uri-template",
                "typed_config": {"@type": template, "path_template": "/api/*/items/**"},
            }
        },
    ]


def test_hosts_match_the_authority_case_insensitively_and_methods_exactly() -> None:
    hosts, methods = permission_rules(
        'to: [{operation: {hosts: [bookinfo.com, "*.example.com", "reviews*", "*"], '
        'methods: [GET, "*"]}}]'
    )
    assert hosts["or_rules"]["rules"] == [
        {
            "header": {
                "name": ":authority",
                "string_match": {"exact": "bookinfo.com", "ignore_case": True},
            }
        },
        {
            "header": {
                "name": ":authority",
                "string_match": {"suffix": ".example.com", "ignore_case": True},
            }
        },
        {
            "header": {
                "name": ":authority",
                "string_match": {"prefix": "reviews", "ignore_case": True},
            }
        },
        {"header": {"name": ":authority", "present_match": True}},
    ]
    assert methods["or_rules"]["rules"] == [
        GET,
        {"header": {"name": ":method", "present_match": True}},
    ]


def test_not_fields_are_a_negated_any_of_after_the_positive_one() -> None:
    assert permission_rules("to: [{operation: {methods: [GET], notPaths: [/admin, /debug]}}]") == [
        {"or_rules": {"rules": [GET]}},
        {
            "not_rule": {
                "or_rules": {
                    "rules": [
                        {"url_path": {"path": {"exact": "/admin"}}},
                        {"url_path": {"path": {"exact": "/debug"}}},
                    ]
                }
            }
        },
    ]


def test_principal_wildcards_keep_the_spiffe_scheme() -> None:
    [any_of] = principal_ids(
        "from: [{source: {principals: "
        '[cluster.local/ns/default/sa/a, "cluster.local/ns/default/*", "*/sa/sleep", "*"]}}]'
    )
    assert [p["authenticated"]["principal_name"] for p in any_of["or_ids"]["ids"]] == [
        {"exact": "spiffe://cluster.local/ns/default/sa/a"},
        {"prefix": "spiffe://cluster.local/ns/default/"},
        {"safe_regex": {"regex": "spiffe://.*/sa/sleep"}},
        {"safe_regex": {"regex": ".+"}},
    ]


def test_source_fields_in_istiods_order() -> None:
    ids = principal_ids(
        """from:
    - source:
        ipBlocks: [127.0.0.1, 10.0.0.0/8]
        notIpBlocks: ["::1"]
        remoteIpBlocks: [203.0.113.0/24]
        namespaces: ["team-*"]
        notNamespaces: [dev]
        serviceAccounts: [bookinfo-productpage, prod/sleep]
        principals: [cluster.local/ns/default/sa/a]"""
    )

    def names(entry: Mapping[str, Any]) -> list[Any]:
        return [
            next(iter(p.values()))["principal_name"]["safe_regex"]["regex"]
            for p in entry["or_ids"]["ids"]
        ]

    principals, accounts, namespaces, not_namespaces, remote, direct, not_direct = ids
    assert principals["or_ids"]["ids"][0]["authenticated"]["principal_name"] == {
        "exact": "spiffe://cluster.local/ns/default/sa/a"
    }
    assert names(accounts) == [
        "spiffe://.+/ns/default/(.+/|)sa/bookinfo-productpage(/.+)?",  # the policy's namespace
        "spiffe://.+/ns/prod/(.+/|)sa/sleep(/.+)?",
    ]
    assert names(namespaces) == [".*/ns/team-.*/.*"]
    assert names(not_namespaces["not_id"]) == [".*/ns/dev/.*"]
    assert remote == {
        "or_ids": {"ids": [{"remote_ip": {"address_prefix": "203.0.113.0", "prefix_len": 24}}]}
    }
    assert direct == {
        "or_ids": {
            "ids": [
                {"direct_remote_ip": {"address_prefix": "127.0.0.1", "prefix_len": 32}},
                {"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}},
            ]
        }
    }
    assert not_direct == {
        "not_id": {
            "or_ids": {"ids": [{"direct_remote_ip": {"address_prefix": "::1", "prefix_len": 128}}]}
        }
    }


def test_when_conditions_join_every_principal_or_every_permission() -> None:
    policy = rule_matchers(
        """from: [{source: {namespaces: [default]}}, {source: {namespaces: [prod]}}]
    to: [{operation: {methods: [GET]}}]
    when:
    - {key: "request.headers[x-user]", values: [jason, "*"], notValues: ["bot-*"]}
    - {key: destination.port, values: ["9080"]}
    - {key: source.ip, values: [127.0.0.1]}
    - {key: connection.sni, values: ["*.svc.cluster.local"]}"""
    )
    header = {"name": "x-user"}
    for principal in policy["principals"]:
        _namespace, user, not_user, source_ip = principal["and_ids"]["ids"]
        assert user == {
            "or_ids": {
                "ids": [
                    {"header": {**header, "string_match": {"exact": "jason"}}},
                    {"header": {**header, "present_match": True}},
                ]
            }
        }
        assert not_user == {
            "not_id": {
                "or_ids": {"ids": [{"header": {**header, "string_match": {"prefix": "bot-"}}}]}
            }
        }
        assert source_ip["or_ids"]["ids"][0]["direct_remote_ip"]["prefix_len"] == 32
    [permission] = policy["permissions"]
    _method, port, sni = permission["and_rules"]["rules"]
    assert port == {"or_rules": {"rules": [{"destination_port": 9080}]}}
    assert sni == {
        "or_rules": {"rules": [{"requested_server_name": {"suffix": ".svc.cluster.local"}}]}
    }


def test_ports_are_mapped_to_the_port_the_inbound_listener_really_binds() -> None:
    rule = """to: [{operation: {ports: ["9080", "8080"], notPorts: ["15000"]}}]
    when: [{key: destination.port, values: ["9080"]}]"""
    ports, not_ports, condition = permission_rules(rule, listener_ports={9080: 20013})
    assert ports == {
        "or_rules": {"rules": [{"destination_port": 20013}, {"destination_port": 8080}]}
    }
    assert not_ports == {"not_rule": {"or_rules": {"rules": [{"destination_port": 15000}]}}}
    assert condition == {"or_rules": {"rules": [{"destination_port": 20013}]}}


def test_a_bad_value_drops_an_allow_rule_but_only_the_value_of_a_deny_rule() -> None:
    """istiod fails closed: an ALLOW rule it cannot translate allows nothing, a DENY rule
    denies more."""
    rule = 'to: [{operation: {ports: ["http", "8080"]}}]'
    assert only_policies(filters_for(REVIEWS, one_rule(rule))) == {}
    assert permission_rules(rule, action="DENY") == [
        {"or_rules": {"rules": [{"destination_port": 8080}]}}
    ]


def test_a_dry_run_policy_goes_to_shadow_rules_and_enforces_nothing() -> None:
    filters = filters_for(
        REVIEWS,
        """
kind: AuthorizationPolicy
metadata:
  name: dry
  annotations: {"istio.io/dry-run": "true"}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/headers]}}]}]
---
kind: AuthorizationPolicy
metadata:
  name: also-dry
  annotations: {"istio.io/dry-run": "true"}
spec: {}
""",
    )
    deny, allow = (f["typed_config"] for f in filters)
    assert "rules" not in deny
    assert list(deny["shadow_rules"]["policies"]) == ["ns[default]-policy[dry]-rule[0]"]
    assert deny["shadow_rules"]["action"] == "DENY"
    assert deny["shadow_rules_stat_prefix"] == "istio_dry_run_deny_"
    assert "rules" not in allow
    assert allow["shadow_rules_stat_prefix"] == "istio_dry_run_allow_"


def test_custom_denies_what_its_rules_match_like_istiod_without_a_provider() -> None:
    filters = filters_for(
        REVIEWS,
        """
kind: AuthorizationPolicy
metadata: {name: ext-authz}
spec:
  action: CUSTOM
  provider: {name: my-custom-authz}
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: audit}
spec: {action: AUDIT, rules: [{}]}
""",
    )
    custom, audit = filters
    assert custom["typed_config"]["rules"]["action"] == "DENY"
    assert list(custom["typed_config"]["rules"]["policies"]) == [
        "istio-ext-authz-my-custom-authz-ns[default]-policy[ext-authz]-rule[0]"
        "-deny-due-to-bad-CUSTOM-action"
    ]
    assert audit["typed_config"]["rules"]["action"] == "LOG"


def test_request_principals_are_written_on_jwt_authns_metadata() -> None:
    [request_principal] = principal_ids(
        'from: [{source: {requestPrincipals: ["https://issuer.example.com/user-1"]}}]'
    )

    def claim(name: str, match: dict[str, Any]) -> dict[str, Any]:
        return {
            "sourced_metadata": {
                "metadata_matcher": {
                    "filter": "envoy.filters.http.jwt_authn",
                    "path": [{"key": "payload"}, {"key": name}],
                    "value": {"string_match": match},
                }
            }
        }

    assert request_principal == {
        "and_ids": {
            "ids": [
                claim("iss", {"exact": "https://issuer.example.com"}),
                claim("sub", {"exact": "user-1"}),
            ]
        }
    }


CUSTOM_POLICY = """
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: CUSTOM
  provider: {name: my-custom-authz}
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
"""


@pytest.mark.parametrize(
    ("policy", "field", "fix"),
    [
        (CUSTOM_POLICY, "action: CUSTOM", "ALLOW or DENY"),
        (
            "kind: AuthorizationPolicy\nmetadata: {name: jwt}\nspec:\n  rules:\n"
            '  - from: [{source: {requestPrincipals: ["*"]}}]',
            "spec.rules[0].from[0].source.requestPrincipals",
            "RequestAuthentication",
        ),
        (
            "kind: AuthorizationPolicy\nmetadata: {name: jwt}\nspec:\n  action: DENY\n  rules:\n"
            '  - from: [{source: {notRequestPrincipals: ["*"]}}]',
            "source.notRequestPrincipals",
            "kind target",
        ),
        (
            "kind: AuthorizationPolicy\nmetadata: {name: claims}\nspec:\n  rules:\n"
            "  - when: [{key: 'request.auth.claims[groups]', values: [admins]}]",
            "spec.rules[0].when[0] (key: request.auth.claims[groups])",
            "RequestAuthentication",
        ),
        (
            "kind: AuthorizationPolicy\nmetadata: {name: gw}\nspec:\n"
            "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: bookinfo}]",
            "spec.targetRefs",
            "spec.selector.matchLabels",
        ),
        (
            "kind: AuthorizationPolicy\nmetadata: {name: gw}\nspec:\n"
            "  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: bookinfo}",
            "spec.targetRef ",
            "spec.selector.matchLabels",
        ),
        (
            "kind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rules:\n"
            "  - when: [{key: 'experimental.envoy.filters.a.b[c]', values: [d]}]",
            "experimental.envoy.filters.a.b[c]",
            "Use one of those keys",
        ),
    ],
)
def test_unsupported_names_the_field_and_the_fix(policy: str, field: str, fix: str) -> None:
    [document] = resources(policy)
    message = unsupported(document)
    assert message is not None
    assert field in message
    assert fix in message


def test_everything_else_is_supported() -> None:
    for document in resources(*BOOKINFO, EVERY_FIELD):
        assert unsupported(document) is None, document["metadata"]["name"]


# --- the real Envoy: --mode validate ------------------------------------------------------------

EVERY_FIELD = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: every-field, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/bookinfo-productpage
        - "cluster.local/ns/*"
        - "*/sa/sleep"
        - "*"
        notPrincipals: [cluster.local/ns/dev/sa/sleep]
        serviceAccounts: [bookinfo-productpage, prod/sleep]
        notServiceAccounts: [legacy]
        namespaces: [default, "team-*"]
        notNamespaces: [dev]
        ipBlocks: [127.0.0.1, 10.0.0.0/8, "::1"]
        notIpBlocks: [192.168.0.0/16]
        remoteIpBlocks: [203.0.113.0/24]
        notRemoteIpBlocks: [203.0.113.7]
    to:
    - operation:
        hosts: [reviews, "reviews:*", "*.example.com", "*"]
        notHosts: [admin.example.com]
        methods: [GET, "*"]
        notMethods: [DELETE]
        paths: [/reviews/0, "/reviews/*", "*/ratings", "*", "/api/{*}/items/{**}"]
        notPaths: [/admin]
        ports: ["9080"]
        notPorts: ["15000"]
    when:
    - {key: "request.headers[x-user]", values: [jason, "*"], notValues: ["bot-*"]}
    - {key: source.ip, values: [127.0.0.1]}
    - {key: remote.ip, notValues: [198.51.100.1]}
    - {key: source.namespace, values: [default]}
    - {key: source.serviceAccount, values: [default/bookinfo-productpage]}
    - {key: source.principal, values: [cluster.local/ns/default/sa/bookinfo-productpage]}
    - {key: destination.ip, values: [127.0.0.1/32]}
    - {key: destination.port, values: ["9080"]}
    - {key: connection.sni, values: ["*.svc.cluster.local"]}
"""
EVERY_ACTION = """
kind: AuthorizationPolicy
metadata: {name: deny-bots}
spec:
  action: DENY
  rules: [{when: [{key: "request.headers[user-agent]", values: ["*bot*"]}]}]
---
kind: AuthorizationPolicy
metadata: {name: audit-writes}
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [POST, PUT, DELETE]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: dry-allow, annotations: {"istio.io/dry-run": "true"}}
spec: {rules: [{to: [{operation: {paths: [/dry]}}]}]}
---
kind: AuthorizationPolicy
metadata: {name: dry-deny, annotations: {"istio.io/dry-run": "true"}}
spec: {action: DENY, rules: [{}]}
---
kind: AuthorizationPolicy
metadata: {name: deny-nothing}
spec: {action: DENY}
---
kind: AuthorizationPolicy
metadata: {name: ext-authz}
spec:
  action: CUSTOM
  provider: {name: my-custom-authz}
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: jwt}
spec:
  action: DENY
  rules:
  - from:
    - source:
        requestPrincipals: ["*", "issuer*", "*/sub", "https://a.example/b"]
        notRequestPrincipals: ["x/y"]
    when:
    - {key: request.auth.principal, values: ["iss/sub"]}
    - {key: request.auth.audiences, values: [bookinfo]}
    - {key: request.auth.presenter, notValues: [client]}
    - {key: "request.auth.claims[groups]", values: [admins, "dev*"]}
    - {key: "request.auth.claims[nested][key]", values: [value]}
"""
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)


def app_listener(name: str, port: int, rbac: list[dict[str, Any]]) -> dict[str, Any]:
    """A plaintext listener whose connection manager runs `rbac` in front of the app, as an
    inbound listener would."""
    return {
        "name": name,
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": HCM,
                        "typed_config": {
                            "@type": HCM_TYPE,
                            "stat_prefix": name,
                            "route_config": {
                                "name": name,
                                "virtual_hosts": [
                                    {
                                        "name": "app",
                                        "domains": ["*"],
                                        "routes": [
                                            {"match": {"prefix": "/"}, "route": {"cluster": "app"}}
                                        ],
                                    }
                                ],
                            },
                            "http_filters": [*rbac, ROUTER],
                        },
                    }
                ]
            }
        ],
    }


def static_bootstrap(
    listeners: list[dict[str, Any]], app_port: int, admin_port: int
) -> dict[str, Any]:
    return {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        "static_resources": {
            "listeners": listeners,
            "clusters": [
                {
                    "name": "app",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "app",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": HOST,
                                                    "port_value": app_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def envoy_path() -> str:
    try:
        return binary.envoy_binary()
    except IstiolabError as error:
        pytest.skip(str(error))


def test_every_supported_field_passes_envoy_validate(envoy_path: str, tmp_path: Path) -> None:
    filters = filters_for(REVIEWS, EVERY_FIELD, EVERY_ACTION, listener_ports={9080: 20013})
    actions = [f["typed_config"].get("rules", {}).get("action") for f in filters]
    assert actions == ["DENY", "LOG", "DENY", "ALLOW"]  # CUSTOM's fallback first
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(static_bootstrap([app_listener("inbound", 1, filters)], 2, 3)))

    ok, output = binary.validate(path)
    assert ok, output
    assert "deprecated" not in output.lower(), output


# --- the real Envoy, running ---------------------------------------------------------------------

GET_PRODUCTPAGE = """
kind: AuthorizationPolicy
metadata: {name: get-productpage}
spec:
  selector: {matchLabels: {app: productpage}}
  rules: [{to: [{operation: {methods: [GET], paths: [/productpage]}}]}]
"""
ALLOW_ALL = "kind: AuthorizationPolicy\nmetadata: {name: allow-all}\nspec: {rules: [{}]}"
DENY_BLOCKED_USER = """
kind: AuthorizationPolicy
metadata: {name: deny-blocked}
spec:
  action: DENY
  rules: [{when: [{key: "request.headers[x-user]", values: [blocked]}]}]
"""
ALLOW_PORT_9080 = """
kind: AuthorizationPolicy
metadata: {name: port-9080}
spec: {rules: [{to: [{operation: {ports: ["9080"]}}]}]}
"""
DRY_RUN_DENY_ALL = """
kind: AuthorizationPolicy
metadata: {name: dry-deny, annotations: {"istio.io/dry-run": "true"}}
spec: {action: DENY, rules: [{}]}
"""
DENY_WITHOUT_RULES = "kind: AuthorizationPolicy\nmetadata: {name: d}\nspec: {action: DENY}"

# Each scenario gets its own listener: the policies applied, and the labels of the workload.
SCENARIOS: dict[str, tuple[tuple[str, ...], Mapping[str, str]]] = {
    "allow-nothing": ((ALLOW_NOTHING,), PRODUCTPAGE),
    "get-productpage": ((GET_PRODUCTPAGE,), PRODUCTPAGE),
    "deny-beats-allow": ((ALLOW_ALL, DENY_BLOCKED_USER), PRODUCTPAGE),
    "details-viewer": ((DETAILS_VIEWER,), DETAILS),
    "port-mapped": ((ALLOW_PORT_9080,), PRODUCTPAGE),
    "port-as-written": ((ALLOW_PORT_9080,), PRODUCTPAGE),
    "dry-run": ((DRY_RUN_DENY_ALL,), PRODUCTPAGE),
    "deny-without-rules": ((DENY_WITHOUT_RULES,), PRODUCTPAGE),
}


@dataclass
class LiveEnvoy:
    ports: dict[str, int]
    admin_port: int

    def call(
        self, scenario: str, method: str = "GET", path: str = "/", **headers: str
    ) -> tuple[int, str]:
        connection = http.client.HTTPConnection(HOST, self.ports[scenario], timeout=5)
        try:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def stats(self) -> str:
        connection = http.client.HTTPConnection(HOST, self.admin_port, timeout=5)
        try:
            connection.request("GET", "/stats")
            return connection.getresponse().read().decode()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def envoy(envoy_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEnvoy]:
    app = Upstream(reply=Reply(body="app", content_type="text/plain"))
    ports = {scenario: closed_port() for scenario in SCENARIOS}
    listeners = []
    for scenario, (policies, labels) in SCENARIOS.items():
        # Policies speak of the app's port 9080; only this listener is told where it really is.
        mapped = {9080: ports[scenario]} if scenario == "port-mapped" else None
        rbac = filters_for(labels, *policies, listener_ports=mapped)
        listeners.append(app_listener(scenario, ports[scenario], rbac))
    live = LiveEnvoy(ports, closed_port())
    config = tmp_path_factory.mktemp("rbac") / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap(listeners, app.port, live.admin_port)))
    process = subprocess.Popen(
        binary.run_command(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until_ready(live, process)
        yield live
    finally:
        stop(process)
        app.close()
    assert process.poll() is not None


def _wait_until_ready(live: LiveEnvoy, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, "envoy exited at startup"
        connection = http.client.HTTPConnection(HOST, live.admin_port, timeout=1)
        try:
            connection.request("GET", "/ready")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.05)  # poll interval while Envoy starts
    raise AssertionError("envoy did not become ready")


def test_allow_nothing_denies_with_envoys_403(envoy: LiveEnvoy) -> None:
    assert envoy.call("allow-nothing") == (403, DENIED_BODY)
    assert DENIED_BODY == "RBAC: access denied"


def test_an_allow_get_policy_lets_get_through_and_denies_the_rest(envoy: LiveEnvoy) -> None:
    assert envoy.call("get-productpage", "GET", "/productpage") == (200, "app")
    assert envoy.call("get-productpage", "GET", "/productpage?u=normal") == (200, "app")
    assert envoy.call("get-productpage", "POST", "/productpage") == (403, DENIED_BODY)
    assert envoy.call("get-productpage", "GET", "/other") == (403, DENIED_BODY)


def test_a_matching_deny_beats_an_allow(envoy: LiveEnvoy) -> None:
    assert envoy.call("deny-beats-allow") == (200, "app")
    assert envoy.call("deny-beats-allow", **{"x-user": "blocked"}) == (403, DENIED_BODY)


def test_a_principal_based_allow_denies_a_plaintext_caller(envoy: LiveEnvoy) -> None:
    """Without mTLS there is no peer certificate, so no `principals` value can match."""
    assert envoy.call("details-viewer") == (403, DENIED_BODY)


def test_a_port_matches_only_once_mapped_to_the_listeners_port(envoy: LiveEnvoy) -> None:
    assert envoy.call("port-mapped") == (200, "app")
    assert envoy.call("port-as-written") == (403, DENIED_BODY)


def test_policies_that_match_nothing_change_nothing(envoy: LiveEnvoy) -> None:
    assert envoy.call("deny-without-rules") == (200, "app")
    assert envoy.call("dry-run") == (200, "app")
    # The dry-run DENY was evaluated all the same, and counted under Istio's prefix.
    assert "http.dry-run.rbac.istio_dry_run_deny_.shadow_denied: 1" in envoy.stats().splitlines()
