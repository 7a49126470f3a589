"""Real receivers on 127.0.0.1 for what the product sends out: an HTTP server for Slack, Discord and
webhook deliveries, and an aiosmtpd mailbox for email. The fixtures that start them are in
conftest.py."""
from __future__ import annotations

import threading
import time
from email import message_from_bytes
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer



class Receiver:
    """Records every POST; `script[path]` lists the statuses to answer in turn (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: dict[str, list[int]] = {}
        self.retry_after = 1
        self.delay: dict[str, float] = {}  # seconds to wait before answering, per path
        self.drip: dict[str, int] = {}  # requests to answer a byte a second, per path (then at once)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "at": time.monotonic()})
                time.sleep(receiver.delay.get(self.path, 0))
                if receiver.drip.get(self.path):
                    receiver.drip[self.path] -= 1
                    return self._drip()
                queue = receiver.script.get(self.path) or []
                status = queue.pop(0) if queue else 200
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", str(receiver.retry_after))
                self.end_headers()
                self.wfile.write(b"ok")

            def _drip(self):
                """An answer that never trips a per-read timeout: one byte a second for a minute."""
                self.send_response(200)
                self.send_header("Content-Length", "60")
                self.end_headers()
                try:
                    for _ in range(60):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=email_policy))
        return "250 OK"


def add_channel(client, m, kind, target, events=("workflow.failed",)):
    r = client.post(f"/api/teams/{m.team_id}/notification-channels",
                    json={"kind": kind, "name": kind, "target": target, "events": list(events)}, headers=m.h())
    assert r.status_code == 201, r.get_json()
    return r.get_json()
