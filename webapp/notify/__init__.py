"""Notification transports, one module each, picked from a registry by channel kind."""
from .base import Message, Transport, TransportError
from .discord import Discord
from .email import Email
from .slack import Slack
from .webhook import Webhook
from ..vocabulary import ChannelKind

TRANSPORTS: dict[str, type[Transport]] = {ChannelKind.SLACK: Slack, ChannelKind.DISCORD: Discord,
                                          ChannelKind.EMAIL: Email, ChannelKind.WEBHOOK: Webhook}

__all__ = ["Message", "Transport", "TransportError", "TRANSPORTS"]
