"""A transport sends one message to one channel, or raises TransportError."""
from __future__ import annotations

from dataclasses import dataclass

import requests

TIMEOUT_SEC = 10


class TransportError(Exception):
    """`permanent` errors are not retried (4xx other than 429, bad configuration)."""

    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message, self.permanent, self.status, self.retry_after = message, permanent, status, retry_after


@dataclass(frozen=True)
class Message:
    event: str  # workflow.failed | .recovered | .silent | .missed | test
    workflow_name: str
    workflow_id: str
    run_id: str  # empty for an event about the workflow with no run (silent, missed)
    status: str
    exit_code: int | None
    attempts: int
    error: str | None
    url: str
    finished_at: str | None
    # Stable across the attempts of one notification: receivers can drop a repeated delivery
    # (delivery is at least once: a worker killed after the POST and before recording it repeats it).
    delivery_id: str | None = None

    @property
    def title(self) -> str:
        if self.event == "workflow.recovered":
            return f"✅ {self.workflow_name} is back to normal"
        if self.event == "test":
            return f"Test notification for {self.workflow_name}"
        if self.event == "workflow.silent":
            return f"🔕 {self.workflow_name} has gone silent"
        if self.event == "workflow.missed":
            return f"⏭ {self.workflow_name} missed a scheduled run"
        return f"🚨 {self.workflow_name} {self.status.replace('_', ' ')}"

    @property
    def link_text(self) -> str:
        return "Open the run" if self.run_id else "Open the workflow"

    @property
    def summary(self) -> str:
        if not self.run_id:
            return self.error or ""
        code = "none" if self.exit_code is None else str(self.exit_code)
        parts = [f"Status: {self.status}", f"Exit code: {code}", f"Attempts: {self.attempts}"]
        if self.error:
            parts.append(f"Error: {self.error}")
        return " · ".join(parts)


class Transport:
    """Subclasses say only what differs: the payload and where it goes."""

    def __init__(self, config: dict, app_config: dict):
        self.config, self.app_config = config, app_config

    def notify(self, message: Message) -> int | None:
        raise NotImplementedError

    def post_json(self, url: str, payload: dict, headers: dict | None = None, data: bytes | None = None) -> int:
        from urllib.parse import urlparse

        from ..services.channels import destination_problem
        # An address that resolves where it must not is final; one that does not resolve now is
        # left to the request below, whose network error is retried.
        problem = destination_problem(urlparse(url).hostname or "", resolve_failures_ok=True)
        if problem:
            raise TransportError(f"not sent: {problem}", permanent=True)
        try:
            response = requests.post(url, json=None if data else payload, data=data, timeout=TIMEOUT_SEC,
                                     headers={"User-Agent": "Workflows-Notifier/1", **(headers or {})},
                                     allow_redirects=False)
        except requests.RequestException as e:
            raise TransportError(f"could not reach the endpoint: {type(e).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransportError(f"the endpoint answered {response.status_code}", status=response.status_code,
                                 retry_after=_retry_after(response.headers.get("Retry-After")))
        if response.status_code >= 400:
            # Not the body: a delivery record must not become a way to read internal pages.
            raise TransportError(f"the endpoint refused the message ({response.status_code})",
                                 permanent=True, status=response.status_code)
        return response.status_code


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
