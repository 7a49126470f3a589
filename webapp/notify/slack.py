"""Slack incoming webhook: a message with blocks and a button to the run page."""
from __future__ import annotations

from .base import Message, Transport


class Slack(Transport):
    def notify(self, message: Message) -> int:
        payload = {
            "text": f"{message.title}: {message.summary} {message.url}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": f"*Workflow*\n{message.workflow_name}"},
                    {"type": "mrkdwn", "text": f"*Status*\n`{message.status}`"},
                    {"type": "mrkdwn", "text": f"*Exit code*\n{_code(message)}"},
                    {"type": "mrkdwn", "text": f"*Attempts*\n{message.attempts}"},
                ]},
                *([{"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n{message.error[:500]}"}}]
                  if message.error else []),
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": message.link_text}, "url": message.url}]},
            ],
        }
        return self.post_json(self.config["url"], payload)


def _code(message: Message) -> str:
    return "none" if message.exit_code is None else str(message.exit_code)
