"""All models, importable from one place."""
from .notifications import EVENTS, Event, NotificationChannel, NotificationDelivery
from .registry import RegistryCredential
from .tenancy import ApiKey, Environment, Membership, Project, Team, User
from .workflows import STATUSES, TERMINAL, TRIGGERS, Run, RunLogChunk, Workflow

__all__ = [
    "ApiKey", "Environment", "Event", "EVENTS", "Membership", "NotificationChannel",
    "NotificationDelivery", "Project", "RegistryCredential", "Run", "RunLogChunk", "STATUSES",
    "Team", "TERMINAL", "TRIGGERS", "User", "Workflow",
]
