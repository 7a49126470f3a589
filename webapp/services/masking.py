"""Env values that look like secrets, hidden where a reader should not see them: the dashboard,
and API responses to read-scope keys (the values stay encrypted at rest either way)."""
from __future__ import annotations

import re

SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|PASS|KEY|CREDENTIAL|AUTH|PRIVATE|DSN|COOKIE|SESSION)", re.I)
MASK = "••••••••"


# A password inside a value, whatever the variable's name: scheme://user:password@host…
URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<password>[^/\s@]+)(?=@)")


def masked_env(env: dict | None) -> dict:
    return {k: (MASK if SECRET_NAME.search(k) else mask_value(v)) for k, v in (env or {}).items()}


def mask_value(value) -> str:
    return URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value) if isinstance(value, str) else value
