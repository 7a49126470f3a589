"""Delivery of events to notification channels (filled in by the notifications work)."""
from __future__ import annotations


def deliver_event(event_id: int) -> None:
    """No channel transports yet: the event row is the record."""
    return None
