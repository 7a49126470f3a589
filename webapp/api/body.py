"""Reading a JSON request body: 415 for another type, 400 for malformed JSON, 413 past 1 MiB."""
from __future__ import annotations

import json

from flask import request

from .errors import ApiError


def json_body(optional: bool = False):
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, "a JSON body is required", "invalid_json")
    if not request.mimetype or request.mimetype != "application/json":
        raise ApiError(415, "send the body as Content-Type: application/json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON: {e}", "invalid_json") from None
