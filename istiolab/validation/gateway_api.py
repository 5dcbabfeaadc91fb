"""Strict JSON Schemas for the Kubernetes Gateway API kinds the course uses.

No package on PyPI ships the Gateway API CRD schemas, so these are written here from the
Gateway API v1 reference (gateway-api.sigs.k8s.io, API types in apis/v1 of
kubernetes-sigs/gateway-api): every field of the standard channel, with unknown fields rejected
as `kubectl apply --validate=strict` does. A few objects whose fields differ between Gateway
API releases (TLS options, experimental-channel additions) are left open and say so (`_OPEN`).
The CEL rules of the CRDs (for example "RequestRedirect must not be combined with backendRefs")
are not checked.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

GROUP = "gateway.networking.k8s.io"


def _obj(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _list(items: Schema, *, min_items: int = 0, max_items: int | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if min_items:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


def _enum(*values: object) -> Schema:
    return {"enum": list(values)}


def _int(minimum: int, maximum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


_STR: Schema = {"type": "string"}
_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 253}
_GROUP: Schema = {"type": "string", "maxLength": 253}
_KIND: Schema = {"type": "string", "minLength": 1, "maxLength": 63}
_NAMESPACE: Schema = {"type": "string", "minLength": 1, "maxLength": 63}
_SECTION_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 253}
_HOSTNAME: Schema = {"type": "string", "minLength": 1, "maxLength": 253}
_PORT: Schema = _int(1, 65535)
_DURATION: Schema = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": _STR}
# Open on purpose: fields whose contents changed between Gateway API releases.
_OPEN: Schema = {"type": "object"}

_LABEL_SELECTOR = _obj(
    {
        "matchLabels": _STRING_MAP,
        "matchExpressions": _list(
            _obj(
                {
                    "key": _STR,
                    "operator": _enum("In", "NotIn", "Exists", "DoesNotExist"),
                    "values": _list(_STR),
                },
                ("key", "operator"),
            )
        ),
    }
)

_PARENT_REFERENCE = _obj(
    {
        "group": _GROUP,
        "kind": _KIND,
        "namespace": _NAMESPACE,
        "name": _NAME,
        "sectionName": _SECTION_NAME,
        "port": _PORT,
    },
    ("name",),
)

_BACKEND_OBJECT_REFERENCE = _obj(
    {"group": _GROUP, "kind": _KIND, "name": _NAME, "namespace": _NAMESPACE, "port": _PORT},
    ("name",),
)

_HTTP_HEADER = _obj({"name": _STR, "value": _STR}, ("name", "value"))

_HTTP_HEADER_FILTER = _obj(
    {
        "set": _list(_HTTP_HEADER, max_items=16),
        "add": _list(_HTTP_HEADER, max_items=16),
        "remove": _list(_STR, max_items=16),
    }
)

_HTTP_PATH_MODIFIER = _obj(
    {
        "type": _enum("ReplaceFullPath", "ReplacePrefixMatch"),
        "replaceFullPath": _STR,
        "replacePrefixMatch": _STR,
    },
    ("type",),
)

_HTTP_ROUTE_FILTER = _obj(
    {
        "type": _enum(
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestMirror",
            "RequestRedirect",
            "URLRewrite",
            "ExtensionRef",
            "CORS",
            "ExternalAuth",
        ),
        "requestHeaderModifier": _HTTP_HEADER_FILTER,
        "responseHeaderModifier": _HTTP_HEADER_FILTER,
        "requestMirror": _obj(
            {
                "backendRef": _BACKEND_OBJECT_REFERENCE,
                "percent": _int(0, 100),
                "fraction": _obj(
                    {"numerator": _int(0, 2**31 - 1), "denominator": _int(1, 2**31 - 1)},
                    ("numerator",),
                ),
            },
            ("backendRef",),
        ),
        "requestRedirect": _obj(
            {
                "scheme": _enum("http", "https"),
                "hostname": _HOSTNAME,
                "path": _HTTP_PATH_MODIFIER,
                "port": _PORT,
                "statusCode": _enum(301, 302, 303, 307, 308),
            }
        ),
        "urlRewrite": _obj({"hostname": _HOSTNAME, "path": _HTTP_PATH_MODIFIER}),
        "cors": _obj(
            {
                "allowOrigins": _list(_STR),
                "allowCredentials": {"type": "boolean"},
                "allowMethods": _list(_STR),
                "allowHeaders": _list(_STR),
                "exposeHeaders": _list(_STR),
                "maxAge": _int(1, 2**31 - 1),
            }
        ),
        "extensionRef": _obj({"group": _GROUP, "kind": _KIND, "name": _NAME}, ("kind", "name")),
        "externalAuth": _OPEN,
    },
    ("type",),
)

_HTTP_VALUE_MATCH = _obj(
    {"type": _enum("Exact", "RegularExpression"), "name": _STR, "value": _STR},
    ("name", "value"),
)

_HTTP_ROUTE_MATCH = _obj(
    {
        "path": _obj({"type": _enum("Exact", "PathPrefix", "RegularExpression"), "value": _STR}),
        "headers": _list(_HTTP_VALUE_MATCH, max_items=16),
        "queryParams": _list(_HTTP_VALUE_MATCH, max_items=16),
        "method": _enum(
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"
        ),
    }
)

_HTTP_BACKEND_REF = _obj(
    {
        "group": _GROUP,
        "kind": _KIND,
        "name": _NAME,
        "namespace": _NAMESPACE,
        "port": _PORT,
        "weight": _int(0, 1_000_000),
        "filters": _list(_HTTP_ROUTE_FILTER, max_items=16),
    },
    ("name",),
)

_HTTP_ROUTE_RULE = _obj(
    {
        "name": _SECTION_NAME,
        "matches": _list(_HTTP_ROUTE_MATCH, max_items=64),
        "filters": _list(_HTTP_ROUTE_FILTER, max_items=16),
        "backendRefs": _list(_HTTP_BACKEND_REF, max_items=16),
        "timeouts": _obj({"request": _DURATION, "backendRequest": _DURATION}),
        "retry": _obj(
            {"codes": _list(_int(400, 599)), "attempts": _int(0, 2**31 - 1), "backoff": _DURATION}
        ),
        "sessionPersistence": _obj(
            {
                "sessionName": _STR,
                "absoluteTimeout": _DURATION,
                "idleTimeout": _DURATION,
                "type": _enum("Cookie", "Header"),
                "cookieConfig": _obj({"lifetimeType": _enum("Permanent", "Session")}),
            }
        ),
    }
)

HTTP_ROUTE_SPEC = _obj(
    {
        "parentRefs": _list(_PARENT_REFERENCE, max_items=32),
        "hostnames": _list(_HOSTNAME, max_items=16),
        "rules": _list(_HTTP_ROUTE_RULE, max_items=16),
    }
)

_SECRET_REFERENCE = _obj(
    {"group": _GROUP, "kind": _KIND, "name": _NAME, "namespace": _NAMESPACE}, ("name",)
)

_LISTENER = _obj(
    {
        "name": _SECTION_NAME,
        "hostname": _HOSTNAME,
        "port": _PORT,
        "protocol": {"type": "string", "minLength": 1, "maxLength": 255},
        "tls": _obj(
            {
                "mode": _enum("Terminate", "Passthrough"),
                "certificateRefs": _list(_SECRET_REFERENCE, max_items=64),
                "frontendValidation": _OPEN,
                "options": _STRING_MAP,
            }
        ),
        "allowedRoutes": _obj(
            {
                "namespaces": _obj(
                    {"from": _enum("All", "Same", "Selector"), "selector": _LABEL_SELECTOR}
                ),
                "kinds": _list(_obj({"group": _GROUP, "kind": _KIND}, ("kind",)), max_items=8),
            }
        ),
    },
    ("name", "port", "protocol"),
)

GATEWAY_SPEC = _obj(
    {
        "gatewayClassName": _NAME,
        "listeners": _list(_LISTENER, min_items=1, max_items=64),
        "addresses": _list(
            _obj({"type": {"type": "string", "maxLength": 253}, "value": _STR}), max_items=16
        ),
        "infrastructure": _obj(
            {
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
                "parametersRef": _obj(
                    {"group": _GROUP, "kind": _KIND, "name": _NAME}, ("group", "kind", "name")
                ),
            }
        ),
        "allowedListeners": _OPEN,
        "backendTLS": _OPEN,
        "tls": _OPEN,
        "defaultScope": _STR,
    },
    ("gatewayClassName", "listeners"),
)

GATEWAY_CLASS_SPEC = _obj(
    {
        "controllerName": {"type": "string", "minLength": 1, "maxLength": 253},
        "parametersRef": _obj(
            {"group": _GROUP, "kind": _KIND, "name": _NAME, "namespace": _NAMESPACE},
            ("group", "kind", "name"),
        ),
        "description": {"type": "string", "maxLength": 64},
    },
    ("controllerName",),
)

REFERENCE_GRANT_SPEC = _obj(
    {
        "from": _list(
            _obj(
                {"group": _GROUP, "kind": _KIND, "namespace": _NAMESPACE},
                ("group", "kind", "namespace"),
            ),
            min_items=1,
            max_items=16,
        ),
        "to": _list(
            _obj({"group": _GROUP, "kind": _KIND, "name": _NAME}, ("group", "kind")),
            min_items=1,
            max_items=16,
        ),
    },
    ("from", "to"),
)

# (version, kind) -> (spec schema, whether spec is required). Kinds of the API that the course
# does not teach get an open spec: their apiVersion, kind and metadata are still checked.
SPECS: dict[tuple[str, str], tuple[Schema, bool]] = {
    ("v1", "Gateway"): (GATEWAY_SPEC, True),
    ("v1beta1", "Gateway"): (GATEWAY_SPEC, True),
    ("v1", "HTTPRoute"): (HTTP_ROUTE_SPEC, True),
    ("v1beta1", "HTTPRoute"): (HTTP_ROUTE_SPEC, True),
    ("v1", "GatewayClass"): (GATEWAY_CLASS_SPEC, True),
    ("v1beta1", "GatewayClass"): (GATEWAY_CLASS_SPEC, True),
    ("v1beta1", "ReferenceGrant"): (REFERENCE_GRANT_SPEC, True),
    ("v1", "ReferenceGrant"): (REFERENCE_GRANT_SPEC, True),
    ("v1", "GRPCRoute"): (_OPEN, True),
    ("v1alpha2", "TLSRoute"): (_OPEN, True),
    ("v1alpha2", "TCPRoute"): (_OPEN, True),
    ("v1alpha2", "UDPRoute"): (_OPEN, True),
    ("v1", "BackendTLSPolicy"): (_OPEN, True),
    ("v1alpha3", "BackendTLSPolicy"): (_OPEN, True),
}


def spec_schema(version: str, kind: str) -> tuple[Schema, bool] | None:
    return SPECS.get((version, kind))


def kinds() -> list[str]:
    return sorted({kind for _, kind in SPECS})
