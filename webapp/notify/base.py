"""A transport sends one message to one channel, or raises TransportError."""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import certifi
import urllib3
from flask import current_app

from ..vocabulary import EventKind
from .destination import destination, destination_problem

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
        if self.event == EventKind.RECOVERED:
            return f"✅ {self.workflow_name} is back to normal"
        if self.event == "test":
            return f"Test notification for {self.workflow_name}"
        if self.event == EventKind.SILENT:
            return f"🔕 {self.workflow_name} has gone silent"
        if self.event == EventKind.MISSED:
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
    """Subclasses say only what differs: what a channel of theirs keeps (`configure`), how it is
    shown (`describe`), the payload and where it goes. This base is an incoming-webhook URL's."""

    def __init__(self, config: dict, app_config: dict):
        self.config, self.app_config = config, app_config

    @classmethod
    def configure(cls, target: str) -> tuple[dict, str | None]:
        """The channel's config from what the member typed (`target`), and why it is not valid or None."""
        return {"url": target.strip()}, url_problem(target)

    @classmethod
    def describe(cls, config: dict) -> str:
        """Where a channel sends, without its secret parts (path, query, user and password)."""
        parsed = urlparse(config.get("url", ""))
        host = parsed.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parsed.port}" if parsed.port else ""
        return f"{parsed.scheme}://{host}{port}/…"

    def notify(self, message: Message) -> int | None:
        raise NotImplementedError

    def post_json(self, url: str, payload: dict, headers: dict | None = None, data: bytes | None = None) -> int:
        parts = urlparse(url)
        # Resolved once, checked, and that very address is the one connected to: a DNS answer
        # that changes between the check and the request (rebinding) cannot redirect it. A name
        # that does not resolve now is not sent to (retried: DNS may be back later).
        address, problem = destination(parts.hostname or "")
        if problem:
            raise TransportError(f"not sent: {problem}", permanent=not problem.endswith("does not resolve"))
        body = data if data is not None else json.dumps(payload).encode()
        sent = {"User-Agent": "Workflows-Notifier/1", "Content-Type": "application/json", **(headers or {})}
        try:
            response = _pinned_post(parts, address, body, sent)
        except urllib3.exceptions.HTTPError as e:
            raise TransportError(f"could not reach the endpoint: {type(e).__name__}") from None
        if response.status == 429 or response.status >= 500:
            raise TransportError(f"the endpoint answered {response.status}", status=response.status,
                                 retry_after=_retry_after(response.headers.get("Retry-After")))
        if response.status >= 400:
            # Not the body: a delivery record must not become a way to read internal pages.
            raise TransportError(f"the endpoint refused the message ({response.status})",
                                 permanent=True, status=response.status)
        return response.status


def url_problem(url: str) -> str | None:
    """Why `url` may not be a channel's endpoint, or None: https (http only to this machine where
    NOTIFY_ALLOW_HTTP_LOCALHOST), at most 2000 characters, and a host notifications may go to."""
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        return "must be an https:// URL"
    if parsed.scheme == "http":
        host = parsed.hostname
        local = host == "localhost"
        try:
            local = local or ipaddress.ip_address(host).is_loopback
        except ValueError:
            pass
        if not (local and current_app.config["NOTIFY_ALLOW_HTTP_LOCALHOST"]):
            return "must be an https:// URL"
    if len(url) > 2000:
        return "at most 2000 characters"
    return destination_problem(parsed.hostname, resolve_failures_ok=True)


def _pinned_post(parts, address: str, body: bytes, headers: dict) -> urllib3.BaseHTTPResponse:
    """POST to `address` for the URL `parts`: the Host header and, over https, the TLS server
    name and the certificate's check are the URL's host name, as if it had been resolved there."""
    host = parts.hostname
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    timeout = urllib3.Timeout(connect=TIMEOUT_SEC, read=TIMEOUT_SEC)
    if https:
        pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host, assert_hostname=host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(), timeout=timeout,
                                           retries=False)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    headers = {**headers, "Host": host if parts.port is None else f"{host}:{port}"}
    if parts.username:  # https://user:password@host/… as requests did
        headers["Authorization"] = urllib3.util.make_headers(
            basic_auth=f"{unquote(parts.username)}:{unquote(parts.password or '')}")["authorization"]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        return pool.urlopen("POST", path, body=body, headers=headers, redirect=False, retries=False)
    finally:
        pool.close()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
