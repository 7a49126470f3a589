"""Every API error is the JSON envelope {"error": {"code", "message"[, "fields"]}}, never HTML."""
from __future__ import annotations

from flask import jsonify
from werkzeug.exceptions import HTTPException

from ..schemas import SchemaError
from ..services.errors import ServiceError

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
         415: "unsupported_media_type", 429: "rate_limited", 500: "internal_error",
         503: "unavailable"}


def error_response(status: int, message: str, code: str | None = None, fields: dict | None = None):
    body = {"error": {"code": code or CODES.get(status, "error"), "message": message}}
    if fields:
        body["error"]["fields"] = fields
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="workflows"'
    return response


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def handle_service_error(e: ServiceError):
    response = error_response(e.status, e.message, e.code, e.fields)
    state = getattr(e, "state", None)  # a spent budget: when to come back
    if state is not None:
        response.headers.update(state.headers())
        response.headers["Retry-After"] = str(state.reset_in)
    return response


def handle_schema_error(e: SchemaError):
    return error_response(400, "the request is not valid: " + ", ".join(
        f"{k}: {v}" for k, v in e.fields.items()), "validation_error", e.fields)


def handle_api_error(e: ApiError):
    return error_response(e.status, e.message, e.code)


def handle_http_error(e: HTTPException):
    message = e.description or e.name
    if e.code == 429:
        message = f"rate limit exceeded ({e.description}); retry after the Retry-After header"
    if e.code == 413:
        message = "the request body is larger than 1 MiB"
    if e.code == 404:
        message = "not found"
    return error_response(e.code or 500, message)


def handle_unexpected(e: Exception):
    from flask import current_app
    current_app.logger.exception("unhandled error")
    return error_response(500, "internal error")
