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
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, f"the body nests deeper than {MAX_DEPTH} levels", "invalid_json") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON: {e}", "invalid_json") from None
    if _depth(body) > MAX_DEPTH:
        raise ApiError(400, f"the body nests deeper than {MAX_DEPTH} levels", "invalid_json")
    return body


MAX_DEPTH = 32  # the deepest valid body is 3 levels; validation must never recurse far


def _depth(value) -> int:
    """Nesting depth, without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            todo.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest
