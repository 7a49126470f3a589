"""Notification transports, one module each, picked from a registry by channel kind."""
from ..vocabulary import ChannelKind
from .base import Message, Transport, TransportError
from .discord import Discord
from .email import Email
from .slack import Slack
from .webhook import Webhook

TRANSPORTS: dict[str, type[Transport]] = {ChannelKind.SLACK: Slack, ChannelKind.DISCORD: Discord,
                                          ChannelKind.EMAIL: Email, ChannelKind.WEBHOOK: Webhook}

__all__ = ["Message", "Transport", "TransportError", "TRANSPORTS"]
