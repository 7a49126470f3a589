"""Errors the service layer raises; the API turns them into JSON, the dashboard into messages."""
from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields


class Invalid(ServiceError):
    status, code = 400, "validation_error"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class BadSignature(ServiceError):
    status, code = 401, "bad_signature"


class Gone(ServiceError):
    status, code = 410, "revoked"


class TooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class Mismatch(ServiceError):
    """An Idempotency-Key sent with another request than its first."""
    status, code = 422, "idempotency_key_reused"
