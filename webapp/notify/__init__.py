"""Notification transports, one module each, picked from a registry by channel kind."""
from .base import Message, Transport, TransportError
from .discord import Discord
from .email import Email
from .slack import Slack
from .webhook import Webhook

TRANSPORTS: dict[str, type[Transport]] = {"slack": Slack, "discord": Discord, "email": Email, "webhook": Webhook}

__all__ = ["Message", "Transport", "TransportError", "TRANSPORTS"]
