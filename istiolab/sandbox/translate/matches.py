"""VirtualService `match` conditions to Envoy RouteMatch (istiod's TranslateRouteMatch).

| Istio HTTPMatchRequest          | Envoy RouteMatch                                           |
|---------------------------------|------------------------------------------------------------|
| (no match)                      | prefix "/" (and no case_sensitive)                         |
| uri exact / prefix / regex      | path / prefix / safe_regex                                 |
| ignoreUriCase                   | case_sensitive: false (always written: !ignoreUriCase)     |
| headers[name]                   | headers[{name, string_match}], sorted by name              |
| headers[name] {} or regex "*"   | headers[{name, present_match: true}]                       |
| withoutHeaders[name]            | the same with invert_match (+ treat_missing_header_as_empty)|
| headers[@request.auth.claims.x] | dynamic_metadata on the istio_authn filter's claims        |
| method / authority / scheme     | headers on :method / :authority / :scheme (after the rest) |
| queryParams[name]               | query_parameters[{name, string_match or present_match}]    |

`port`, `sourceLabels`, `sourceNamespace` and `gateways` are not Envoy matchers: istiod decides,
for the proxy it is configuring, whether the route is there at all (`applies_to_proxy`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from typing import Any

from .hosts import resolve_gateway_name

HEADER_METHOD = ":method"
HEADER_AUTHORITY = ":authority"
HEADER_SCHEME = ":scheme"

_JWT_CLAIMS = "@request.auth.claims"
_JWT_FILTER = "istio_authn"  # where Istio's authn filter puts verified claims


def string_matcher(match: Mapping[str, Any]) -> dict[str, Any] | None:
    """An Istio StringMatch as an Envoy StringMatcher (ConvertToEnvoyMatch)."""
    if "exact" in match:
        return {"exact": str(match["exact"])}
    if "prefix" in match:
        return {"prefix": str(match["prefix"])}
    if "regex" in match:
        return {"safe_regex": {"regex": str(match["regex"])}}
    return None


def is_present_match(match: Mapping[str, Any] | None) -> bool:
    """An empty StringMatch, or regex "*" (not RE2, a wildcard), means "the header is there".

    An empty prefix or regex means the same; Envoy refuses both as matchers (min length 1).
    """
    if not match or string_matcher(match) is None:
        return True
    return match.get("regex") in ("*", "") or match.get("prefix") == ""


def header_matcher(name: str, match: Mapping[str, Any] | None) -> dict[str, Any]:
    if is_present_match(match):
        return {"name": name, "present_match": True}
    assert match is not None
    return {"name": name, "string_match": string_matcher(match)}


def query_parameter_matcher(name: str, match: Mapping[str, Any] | None) -> dict[str, Any]:
    if is_present_match(match):
        return {"name": name, "present_match": True}
    assert match is not None
    return {"name": name, "string_match": string_matcher(match)}


def jwt_claims(name: str) -> list[str] | None:
    """`@request.auth.claims.group.id` or `@request.auth.claims[group][id]`: ["group", "id"]."""
    if not name.startswith(_JWT_CLAIMS):
        return None
    rest = name[len(_JWT_CLAIMS) :]
    if rest.startswith("."):
        claims = rest[1:].split(".")
    elif re.fullmatch(r"(\[[^\[\]]+\])+", rest):
        claims = re.findall(r"\[([^\[\]]+)\]", rest)
    else:
        return None
    return claims if all(claims) else None


def _claims_matcher(claims: list[str], match: Mapping[str, Any] | None) -> dict[str, Any]:
    value: dict[str, Any]
    if is_present_match(match):
        value = {"present_match": True}
    else:
        assert match is not None
        value = {"list_match": {"one_of": {"string_match": string_matcher(match)}}}
    return {
        "filter": _JWT_FILTER,
        "path": [{"key": "request.auth.claims"}, *({"key": claim} for claim in claims)],
        "value": value,
    }


def route_match(match: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Envoy RouteMatch for one entry of `http[].match` (None: the rule has no match)."""
    out: dict[str, Any] = {"prefix": "/"}
    if match is None:
        return out

    headers: list[dict[str, Any]] = []
    dynamic_metadata: list[dict[str, Any]] = []
    for name, condition in (match.get("headers") or {}).items():
        claims = jwt_claims(name)
        if claims is not None:
            dynamic_metadata.append(_claims_matcher(claims, condition))
        else:
            headers.append(header_matcher(name, condition))
    for name, condition in (match.get("withoutHeaders") or {}).items():
        claims = jwt_claims(name)
        if claims is not None:
            dynamic_metadata.append({**_claims_matcher(claims, condition), "invert": True})
            continue
        matcher = {**header_matcher(name, condition), "invert_match": True}
        if not is_present_match(condition):
            # Envoy refuses treat_missing_header_as_empty together with present_match.
            matcher["treat_missing_header_as_empty"] = True
        headers.append(matcher)
    headers.sort(key=lambda matcher: matcher["name"])

    uri = match.get("uri") or {}
    if "exact" in uri:
        out = {"path": str(uri["exact"])}
    elif "prefix" in uri:
        out = {"prefix": str(uri["prefix"])}
    elif uri.get("regex"):
        out = {"safe_regex": {"regex": str(uri["regex"])}}
    out["case_sensitive"] = not match.get("ignoreUriCase", False)

    for header, field in (
        (HEADER_METHOD, "method"),
        (HEADER_AUTHORITY, "authority"),
        (HEADER_SCHEME, "scheme"),
    ):
        if field in match:
            headers.append(header_matcher(header, match[field]))
    if headers:
        out["headers"] = headers

    # istiod walks a Go map here (random order); sorted by name, the output is stable.
    query = match.get("queryParams") or {}
    if query:
        out["query_parameters"] = [
            query_parameter_matcher(name, query[name]) for name in sorted(query)
        ]
    if dynamic_metadata:
        out["dynamic_metadata"] = dynamic_metadata
    return out


def is_catch_all(route: Mapping[str, Any]) -> bool:
    """A route that matches every request (IsCatchAllRoute): routes after it are never used."""
    match = route["match"]
    if "prefix" in match:
        catch_all = match["prefix"] == "/"
    elif "path_separated_prefix" in match:
        catch_all = match["path_separated_prefix"] == "/"
    elif "safe_regex" in match:
        catch_all = match["safe_regex"]["regex"] == ".*"
    else:
        catch_all = False
    return catch_all and not any(
        match.get(field) for field in ("headers", "query_parameters", "dynamic_metadata")
    )


def applies_to_proxy(
    match: Mapping[str, Any] | None,
    proxy_labels: Mapping[str, str],
    gateway_names: Set[str],
    proxy_namespace: str,
    namespace: str,
) -> bool:
    """Whether a match entry's route belongs in this proxy's configuration (sourceMatchHTTP).

    `match.gateways`, when set, decides alone (its `sourceLabels` are then ignored, as in
    istiod); otherwise `sourceLabels` must be a subset of the proxy's labels and
    `sourceNamespace` (if set) its namespace. `namespace` is the VirtualService's, against
    which short gateway names in `match.gateways` resolve.
    """
    if match is None:
        return True
    if match.get("gateways"):
        return any(
            resolve_gateway_name(str(name), namespace) in gateway_names
            for name in match["gateways"]
        )
    source_labels = match.get("sourceLabels") or {}
    if any(proxy_labels.get(key) != value for key, value in source_labels.items()):
        return False
    source_namespace = match.get("sourceNamespace")
    return not source_namespace or source_namespace == proxy_namespace
