"""Generic webhook: a JSON POST signed with HMAC-SHA256 over the raw body."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

from .base import Message, Transport

SIGNATURE_HEADER = "X-Workflows-Signature"
DELIVERY_HEADER = "X-Workflows-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Webhook(Transport):
    @classmethod
    def configure(cls, target: str) -> tuple[dict, str | None]:
        config, problem = super().configure(target)
        return {**config, "secret": "whsec_" + secrets.token_urlsafe(32)}, problem  # shown once, at creation

    def notify(self, message: Message) -> int:
        payload = {
            "event": message.event,
            "workflow": {"id": message.workflow_id, "name": message.workflow_name},
            "run": {"id": message.run_id, "status": message.status, "exitCode": message.exit_code,
                    "attempts": message.attempts, "error": message.error, "url": message.url,
                    "finishedAt": message.finished_at} if message.run_id else None,
        }
        if not message.run_id:  # about the workflow itself (silent, missed)
            payload["workflow"].update(url=message.url, detail=message.error)
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Workflows-Timestamp": timestamp,
                   SIGNATURE_HEADER: sign(self.config["secret"], timestamp, body)}
        if message.delivery_id:
            headers[DELIVERY_HEADER] = message.delivery_id
        return self.post_json(self.config["url"], payload, headers=headers, data=body)
