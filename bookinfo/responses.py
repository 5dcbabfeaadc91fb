"""Response helpers shared by the services.

Istio's doc tests compare some bodies byte for byte, and the four original services were written
in four languages with four JSON styles: details and ratings are compact (`{"id":0}`), productpage
uses Python's default separators (`{"id": 0}`), and reviews builds its JSON by hand. Each service
picks its style explicitly here rather than relying on Flask's `jsonify`.
"""

from __future__ import annotations

import json

from flask import Response

COMPACT = (",", ":")  # Ruby's to_json and JavaScript's JSON.stringify
PYTHON_DEFAULT = (", ", ": ")  # json.dumps without arguments


def json_response(
    data: object, status: int = 200, separators: tuple[str, str] = COMPACT
) -> Response:
    body = json.dumps(data, separators=separators, ensure_ascii=False)
    try:
        encoded = body.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud800" in the JSON a client posted) has no UTF-8 form; escape it, as
        # JavaScript's JSON.stringify does.
        encoded = json.dumps(data, separators=separators).encode("ascii")
    return Response(encoded, status=status, mimetype="application/json")


def raw_json_response(body: str, status: int = 200) -> Response:
    """A body that is already JSON text (reviews builds its own)."""
    return Response(body, status=status, mimetype="application/json")
