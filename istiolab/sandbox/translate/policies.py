"""The per-route policies of a VirtualService rule: timeout, retries, fault injection, mirroring.

Each function follows istiod (pilot/pkg/networking/core/route/route.go, route/retry/retry.go)
and writes Istio's defaults explicitly, since they differ from Envoy's:

- timeout: unset means **disabled** (`timeout: 0s`; Envoy's own default is 15 s). istiod
  mirrors the value into `max_grpc_timeout`, which Envoy 1.40 deprecates. Its replacement,
  `max_stream_duration.grpc_timeout_header_max`, is *not* written: on Envoy 1.40 a route that
  has it ignores its `timeout` for plain HTTP requests (a 0.5 s timeout let a 2 s answer
  through), and the sandbox serves no gRPC.
- retries: unset means Istio's default policy (2 retries on connect-failure, refused-stream,
  unavailable, cancelled; since Istio 1.24 *not* on 503); `attempts: 0` means no retry policy.
- fault: `percentage` missing means nothing is delayed or aborted.
- mirror: `mirrorPercentage` missing means 100 %; an explicit 0 means no mirror.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from .durations import envoy_duration

FAULT_FILTER = "envoy.filters.http.fault"
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"

DISABLED_TIMEOUT = "0s"
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_NUM_RETRIES = 2
HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {
        "@type": "type.googleapis.com/"
        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
    },
}
PREVIOUS_PRIORITIES = {
    "name": "envoy.retry_priorities.previous_priorities",
    "typed_config": {
        "@type": "type.googleapis.com/"
        "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
        "update_frequency": 2,
    },
}
# Envoy's RetryPolicy fields in their proto order, so the output reads like a config dump.
_RETRY_FIELDS = (
    "retry_on",
    "num_retries",
    "per_try_timeout",
    "retry_priority",
    "retry_host_predicate",
    "host_selection_retry_max_attempts",
    "retriable_status_codes",
    "retry_back_off",
)

# gRPC status names (grpc/codes) as Istio's abort.grpcStatus takes them.
GRPC_STATUS = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def timeout_fields(timeout: str | None) -> dict[str, Any]:
    """RouteAction `timeout`: the VS timeout, or disabled."""
    return {"timeout": envoy_duration(timeout) if timeout else DISABLED_TIMEOUT}


def retry_policy(
    retries: Mapping[str, Any] | None, *, consistent_hash: bool = False
) -> dict[str, Any] | None:
    """Istio's retry.ConvertPolicy: the default policy, overridden by the VS `retries`.

    With consistent-hash load balancing the previous_hosts predicate is left out, so that a
    retry goes back to the same host.
    """
    out: dict[str, Any] = {
        "retry_on": DEFAULT_RETRY_ON,
        "num_retries": DEFAULT_NUM_RETRIES,
        "host_selection_retry_max_attempts": HOST_SELECTION_RETRY_MAX_ATTEMPTS,
    }
    if not consistent_hash:
        out["retry_host_predicate"] = [copy.deepcopy(PREVIOUS_HOSTS)]
    if retries is not None:
        attempts = int(retries.get("attempts") or 0)
        if attempts <= 0:
            return None  # retries explicitly disabled
        out["num_retries"] = attempts
        if retries.get("retryOn"):
            retry_on, codes = parse_retry_on(str(retries["retryOn"]))
            out["retry_on"] = retry_on
            if codes:
                out["retriable_status_codes"] = codes
                if "retriable-status-codes" not in retry_on:
                    out["retry_on"] = f"{retry_on},retriable-status-codes".lstrip(",")
        if retries.get("perTryTimeout"):
            out["per_try_timeout"] = envoy_duration(retries["perTryTimeout"])
        if retries.get("retryIgnorePreviousHosts") is not None:
            if retries["retryIgnorePreviousHosts"]:
                out["retry_host_predicate"] = [copy.deepcopy(PREVIOUS_HOSTS)]
            else:
                out.pop("retry_host_predicate", None)
        if retries.get("retryRemoteLocalities"):
            out["retry_priority"] = copy.deepcopy(PREVIOUS_PRIORITIES)
        if retries.get("backoff"):
            out["retry_back_off"] = {"base_interval": envoy_duration(retries["backoff"])}
    return {field: out[field] for field in _RETRY_FIELDS if field in out}


def parse_retry_on(retry_on: str) -> tuple[str, list[int]]:
    """Split `retryOn` into Envoy's retry_on and the HTTP status codes listed in it."""
    conditions: list[str] = []
    codes: list[int] = []
    for part in (part.strip() for part in retry_on.split(",")):
        if not part:
            continue
        if part.isdigit() and int(part) in HTTPStatus._value2member_map_:
            codes.append(int(part))
        else:
            conditions.append(part)
    return ",".join(conditions), codes


def percent_of_million(value: float) -> dict[str, Any]:
    """An Istio Percent (a double, 0-100) as a FractionalPercent, as istiod converts it."""
    return {"numerator": int(float(value) * 10000), "denominator": "MILLION"}


def percent_of_hundred(value: int) -> dict[str, Any]:
    """The legacy integer percentages (`fault.delay.percent`, `mirrorPercent`)."""
    return {"numerator": int(value), "denominator": "HUNDRED"}


def fault_config(fault: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The route's `envoy.filters.http.fault` config (TranslateFault), None if it has none."""
    if not fault:
        return None
    out: dict[str, Any] = {"@type": FAULT_TYPE}
    delay = fault.get("delay")
    if delay and delay.get("fixedDelay"):  # exponentialDelay: not supported, as in istiod
        out["delay"] = {
            "fixed_delay": envoy_duration(delay["fixedDelay"]),
            "percentage": (
                percent_of_million(delay["percentage"].get("value", 0))
                if delay.get("percentage") is not None
                else percent_of_hundred(int(delay.get("percent") or 0))
            ),
        }
    abort = fault.get("abort")
    if abort:
        translated: dict[str, Any] | None = None
        if "httpStatus" in abort:
            translated = {"http_status": int(abort["httpStatus"])}
        elif "grpcStatus" in abort:
            translated = {"grpc_status": GRPC_STATUS.get(str(abort["grpcStatus"]), 0)}
        # http2Error: not supported, as in istiod
        if translated is not None:
            if abort.get("percentage") is not None:
                translated["percentage"] = percent_of_million(abort["percentage"].get("value", 0))
            out["abort"] = translated
    if "delay" not in out and "abort" not in out:
        return None
    return out


def mirror_fraction(
    percentage: Mapping[str, Any] | None, legacy_percent: Any = None
) -> dict[str, Any] | None:
    """How much traffic a mirror copies (MirrorPercent): None means do not mirror."""
    if percentage is not None:
        value = float(percentage.get("value", 0))
        return {"default_value": percent_of_million(value)} if value > 0 else None
    if legacy_percent is not None:
        value = legacy_percent
        if isinstance(legacy_percent, Mapping):  # the wrapper type written out in full
            value = legacy_percent.get("value", 0)
        return {"default_value": percent_of_hundred(int(value))} if int(value) > 0 else None
    return {"default_value": percent_of_hundred(100)}


def mirror_policy(cluster: str, fraction: Mapping[str, Any]) -> dict[str, Any]:
    """A request_mirror_policies entry. Istio keeps the mirrored Host as it is (no -shadow)."""
    return {
        "cluster": cluster,
        "runtime_fraction": dict(fraction),
        "trace_sampled": False,
        "disable_shadow_host_suffix_append": True,
    }
