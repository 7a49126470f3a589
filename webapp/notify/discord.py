"""Discord webhook: a message with one embed linking to the run page."""
from __future__ import annotations

from ..vocabulary import EventKind
from .base import Message, Transport

RED, GREEN, GREY = 0xD92D20, 0x12B76A, 0x667085


class Discord(Transport):
    def notify(self, message: Message) -> int:
        color = GREEN if message.event == EventKind.RECOVERED else GREY if message.event == "test" else RED
        embed = {
            "title": message.title[:256], "url": message.url, "color": color,
            "description": message.error[:1000] if message.error else None,
            "fields": [
                {"name": "Workflow", "value": message.workflow_name, "inline": True},
                {"name": "Status", "value": message.status, "inline": True},
                {"name": "Exit code", "value": "none" if message.exit_code is None else str(message.exit_code),
                 "inline": True},
                {"name": "Attempts", "value": str(message.attempts), "inline": True},
                {"name": "Run" if message.run_id else "Workflow page",
                 "value": f"[{message.run_id or message.workflow_id}]({message.url})", "inline": False},
            ],
        }
        if message.finished_at:
            embed["timestamp"] = message.finished_at
        return self.post_json(self.config["url"], {"content": message.title, "embeds": [embed]})
