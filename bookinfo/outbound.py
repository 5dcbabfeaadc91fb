"""Calls from one Bookinfo service to another.

Every call opens a fresh connection (no pooling, as in Istio's productpage, so that a learner can
watch load spread over several versions of a service) and has a timeout. A call that gets no
answer (refused, reset, timed out) returns None: the caller decides what the page shows then.

`requests` honours HTTP_PROXY, which is how the sandbox points an app at its sidecar.
"""

from __future__ import annotations

import logging

import requests

log = logging.getLogger(__name__)


def get(
    url: str, headers: dict[str, str], timeout: float, accept_json: bool = False
) -> requests.Response | None:
    if accept_json:
        headers = {**headers, "Accept": "application/json"}
    try:
        return requests.get(url, headers=headers, timeout=timeout)
    except (requests.RequestException, ValueError) as exc:
        # ValueError: a header value requests refuses to send (InvalidHeader is both).
        log.warning("GET %s failed: %s", url, exc)
        return None


def json_body(response: requests.Response | None) -> object | None:
    """The decoded JSON body of a response, or None when there is none to decode."""
    if response is None:
        return None
    try:
        return response.json()
    except ValueError:
        return None
