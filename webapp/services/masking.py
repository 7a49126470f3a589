"""Env values that look like secrets, hidden where a reader should not see them: the dashboard,
and API responses to read-scope keys (the values stay encrypted at rest either way)."""
from __future__ import annotations

import re

SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|PASS|KEY|CREDENTIAL|AUTH|PRIVATE|DSN|COOKIE|SESSION)", re.I)
MASK = "••••••••"


def masked_env(env: dict | None) -> dict:
    return {k: (MASK if SECRET_NAME.search(k) else v) for k, v in (env or {}).items()}
